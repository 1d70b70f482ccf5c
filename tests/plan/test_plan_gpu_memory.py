"""scripts/bench/gpu_memory.py end to end on CPU at --scale tiny: the recipe's architecture class,
method (4-bit bnb + LoRA, or a full fine-tune), checkpointing and optimiser really train."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clihelp import OFFLINE_ENV, ROOT, load_script

SCRIPT = ROOT / "scripts" / "bench" / "gpu_memory.py"


def run(recipe: str, out: Path, *extra: str) -> dict:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--recipe", recipe, "--scale", "tiny", "--steps", "2",
         "--json", str(out), *extra],
        capture_output=True, text=True, env={**os.environ, **OFFLINE_ENV}, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "plan (" in proc.stdout and "tokens/s" in proc.stdout
    return json.loads(out.read_text())


@pytest.mark.smoke
def test_qlora_recipe_trains_a_tiny_4bit_twin(tmp_path):
    r = run("mistral7b-qlora-support", tmp_path / "q.json")
    m = r["measured"]
    assert m["device"] == "cpu" and m["steps"] == 2 and m["finite_loss"]
    assert all(math.isfinite(x) and x > 0 for x in m["losses"])
    # 2 layers x 7 projections are bitsandbytes Linear4bit, and only LoRA weights train
    assert m["quantized_layers"] == 2 * 7
    assert 0 < m["trainable_params"] < m["total_params"]
    assert m["tokens_per_s"] > 0
    # the plan is computed for the same tiny architecture
    assert r["plan"]["params"] < 1_000_000 and r["plan"]["peak_gb"] > 0
    assert "weights" in r["plan"]["breakdown"]


@pytest.mark.smoke
def test_full_fine_tune_recipe_trains_every_weight(tmp_path):
    r = run("qwen1.5b-full-triage", tmp_path / "f.json")
    m = r["measured"]
    assert m["finite_loss"] and m["quantized_layers"] == 0
    assert m["trainable_params"] == m["total_params"]


def test_gpu_measurements_become_calibration_points():
    """What a GPU run measures is written in calibration.yaml's format and the bench reads it."""

    from tunebook.compose import compose_recipe

    gm = load_script(SCRIPT, "bench_gpu_memory")
    bench = load_script(ROOT / "scripts" / "bench" / "plan.py", "bench_plan_for_points")
    cfg = compose_recipe("mistral7b-qlora-support").config
    measured = {"device": "NVIDIA H100 80GB HBM3", "attn": "sdpa", "steps": 4,
                "sequence_len": 4096, "max_reserved_gib": 9.0,
                "versions": {"torch": "2.13.0", "transformers": "5.16.1", "peft": "0.20.0",
                             "bitsandbytes": "0.50.2", "flash-attn": "-"}}
    cpu_only = {**measured}
    del cpu_only["max_reserved_gib"]
    points = gm.calibration_points("mistral7b-qlora-support", cfg,
                                   [{"measured": measured}, {"measured": cpu_only}])
    assert len(points) == 1  # CPU runs measure nothing comparable
    point = points[0]
    assert point["kind"] == "measured" and point["metric"] == "torch_reserved"
    assert point["axolotl"]["sequence_len"] == 4096 and point["value_gib"] == 9.0
    result = bench.evaluate(point)
    expected = plan_peak_without_context(cfg, 4096)
    assert result.estimate_gib == pytest.approx(expected)
    assert result.error == pytest.approx(expected / 9.0 - 1)


def plan_peak_without_context(cfg: dict, seq: int) -> float:
    import copy

    from tunebook.plan.estimate import estimate
    from tunebook.plan.memory import CUDA_CONTEXT_GIB

    c = copy.deepcopy(cfg)
    c["axolotl"]["sequence_len"] = seq
    c["axolotl"]["attn_implementation"] = "sdpa"
    return estimate(c, "a100-80g", suggest=False).peak_gb - CUDA_CONTEXT_GIB


def load_gpu_memory():
    return load_script(SCRIPT, "bench_gpu_memory_pure")


def test_full_scale_refuses_without_cuda(monkeypatch, capsys):
    import torch

    gm = load_gpu_memory()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same on a GPU machine
    assert gm.main(["--recipe", "mistral7b-qlora-support", "--methods", "qlora,lora"]) == 2
    err = capsys.readouterr().err
    assert "needs a CUDA GPU" in err and "--scale tiny" in err


def test_methods_share_everything_but_the_method():
    gm = load_gpu_memory()
    q = gm.method_config("mistral7b-qlora-support", "", None)
    lo = gm.method_config("mistral7b-qlora-support", "", "lora")
    assert q["meta"]["method"]["kind"] == "qlora" and lo["meta"]["method"]["kind"] == "lora"
    assert q["axolotl"]["load_in_4bit"] and not lo["axolotl"].get("load_in_4bit")
    for key in ("sequence_len", "micro_batch_size", "datasets", "base_model"):
        assert q["axolotl"][key] == lo["axolotl"][key], key
    assert q["meta"]["model"] == lo["meta"]["model"]


def test_liger_keys_become_kernel_arguments():
    gm = load_gpu_memory()
    assert gm.liger_kwargs({"liger_rope": True, "liger_glu_activation": True,
                            "liger_fused_linear_cross_entropy": True, "liger_rms_norm": False}
                           ) == {"rope": True, "swiglu": True, "fused_linear_cross_entropy": True}
    notes: list[str] = []
    gm.apply_liger(None, {"liger_rms_norm": True}, "cpu", notes)
    assert notes == ["Liger kernels (rms_norm) need CUDA: not applied on CPU"]


def test_summary_puts_each_measurement_beside_its_plan():
    gm = load_gpu_memory()
    gpu = {"device": "NVIDIA H200", "sequence_len": 4096, "max_allocated_gib": 8.0,
           "max_reserved_gib": 9.0}
    reports = [
        {"method": "qlora", "measured": gpu, "plan": {"peak_without_context_gb": 9.9},
         "error_reserved": 9.9 / 9.0 - 1},
        {"method": "lora", "measured": {"device": "cpu", "sequence_len": 1024},
         "plan": {"peak_without_context_gb": 17.0}},
    ]
    lines = gm.summary_table(reports).splitlines()
    assert lines[2].split() == ["qlora", "4096", "9.90", "8.00", "9.00", "+10.0%", "NVIDIA",
                                "H200"]
    assert lines[3].split() == ["lora", "1024", "17.00", "-", "-", "no", "GPU", "cpu"]


@pytest.mark.smoke
def test_tiny_sweep_of_both_methods_and_two_lengths(tmp_path):
    """The GPU measurement's path end to end on CPU: QLoRA and LoRA, two sequence lengths."""
    out = tmp_path / "sweep.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--recipe", "mistral7b-qlora-support", "--scale", "tiny",
         "--steps", "1", "--methods", "qlora,lora", "--sequence-len", "16,32", "--json",
         str(out)], capture_output=True, text=True, env={**os.environ, **OFFLINE_ENV}, cwd=ROOT,
        timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    reports = json.loads(out.read_text())
    assert [(r["method"], r["measured"]["sequence_len"]) for r in reports] == [
        ("qlora", 16), ("qlora", 32), ("lora", 16), ("lora", 32)]
    assert reports[0]["measured"]["quantized_layers"] == 2 * 7
    assert reports[2]["measured"]["quantized_layers"] == 0
    assert "plan beside measurement" in proc.stdout
