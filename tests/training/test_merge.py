"""`make merge`: the merged model keeps the dtype the run trained in, and the serving commands
say so (the merge itself, base + adapter == merged, is in test_training_runs.py)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from tunebook.rundir import RunDir
from tunebook.training import merge


def fake_run(tmp_path: Path, ax: dict, *, gpus: list[str] | None = None,
             gate: dict | None = None) -> RunDir:
    path = tmp_path / "runs" / "r" / "1"
    (path / "output").mkdir(parents=True)
    (path / "axolotl.yaml").write_text(yaml.safe_dump({"base_model": "org/base", **ax}))
    (path / "manifest.json").write_text(json.dumps({
        "status": "completed", "hardware": {"gpus": gpus or []},
        **({"gate": gate} if gate else {})}))
    return RunDir.open(path)


@pytest.mark.parametrize(("flags", "dtype"), [
    ({"bf16": True, "fp16": False}, "bfloat16"),
    ({"bf16": False, "fp16": True}, "float16"),
    ({"bf16": False, "fp16": False}, "float32"),
])
def test_the_dtype_is_what_the_trainer_used(tmp_path, flags, dtype):
    run = fake_run(tmp_path, {"bf16": "auto"})
    torch.save(SimpleNamespace(**flags), run.output_dir / "training_args.bin")
    assert merge.trained_dtype(run) == dtype


@pytest.mark.parametrize(("ax", "gpus", "dtype"), [
    ({"bf16": "auto"}, ["NVIDIA A10G, 23028 MiB"], "bfloat16"),  # auto on a GPU run
    ({"bf16": "auto"}, [], "float32"),  # auto on a CPU run: fp32
    ({"bf16": False, "fp16": True}, ["Tesla T4, 15360 MiB"], "float16"),
    ({"bf16": True}, [], "bfloat16"),
])
def test_without_the_trainers_record_the_config_and_hardware_decide(tmp_path, ax, gpus, dtype):
    assert merge.trained_dtype(fake_run(tmp_path, ax, gpus=gpus)) == dtype


def test_serving_commands_carry_the_dtype_and_the_adapter_rank(tmp_path):
    ax = {"sequence_len": 1024, "lora_r": 32}
    assert merge.vllm_command(Path("/m"), "rec", ax, "bfloat16") == \
        "vllm serve /m --served-model-name rec --max-model-len 1024 --dtype bfloat16"
    cmd = merge.adapter_command("org/base", Path("/runs/x/output"), "rec", ax, "bfloat16")
    assert cmd == ("vllm serve org/base --enable-lora --lora-modules rec=/runs/x/output "
                   "--max-lora-rank 32 --max-model-len 1024 --dtype bfloat16")
    assert "--max-lora-rank" not in merge.adapter_command("b", Path("/a"), "r", {"lora_r": 16},
                                                          "float32")


def test_merging_a_run_the_gate_rejected_warns(tmp_path):
    run = fake_run(tmp_path, {"bf16": True}, gate={"ship": False, "reasons": ["primary: 0.01"]})
    made = merge.merge(run)  # a full fine-tune (no adapter): nothing to load
    assert not made.merged_now and made.dtype == "bfloat16"
    assert "DO NOT SHIP" in made.warning and "primary: 0.01" in made.warning
    assert made.serve.endswith("--dtype bfloat16") and made.serve_adapter is None
    shipped = fake_run(tmp_path / "b", {"bf16": True}, gate={"ship": True, "reasons": []})
    assert merge.merge(shipped).warning is None
