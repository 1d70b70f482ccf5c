"""SFT, then DPO: a preference run starts from a completed supervised run's model (FROM_RUN)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from trainhelp import SHORT, manifest, runs_of, scratch_repo, tb

from clihelp import assert_user_error

DPO = "tiny-dpo-support"
DPO_SHORT = "+axolotl.max_steps=2 axolotl.eval_steps=1 axolotl.save_steps=1"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return scratch_repo(tmp_path_factory.mktemp("sft-dpo") / "repo")


@pytest.mark.slow
def test_a_tiny_sft_run_chains_into_a_tiny_dpo_run(repo: Path):
    sft = tb(repo, "train", "--overrides", SHORT)
    assert sft.code == 0, sft.text
    sft_run = runs_of(repo)[-1]
    r = tb(repo, "train", "--recipe", DPO, "--from-run", str(sft_run), "--overrides", DPO_SHORT)
    assert r.code == 0, r.text
    dpo_run = runs_of(repo, DPO)[-1]
    m = manifest(dpo_run)
    assert m["status"] == "completed" and m["metrics"]["all_finite"]
    assert m["from_run"] == {"run": str(sft_run), "recipe": "tiny-lora-triage",
                             "base": str(sft_run / "merged")}
    # the DPO run trained on the merged SFT model: its base is the earlier run's merge
    assert yaml.safe_load((dpo_run / "axolotl.yaml").read_text())["base_model"] == \
        str(sft_run / "merged")
    assert (sft_run / "merged" / "model.safetensors").is_file()
    assert manifest(sft_run)["merged"] == str(sft_run / "merged")
    assert json.loads((dpo_run / "output" / "adapter_config.json").read_text())[
        "base_model_name_or_path"] == str(sft_run / "merged")


def test_from_run_refuses_an_unfinished_run_or_another_model(repo: Path, tmp_path: Path):
    fake = repo / "runs" / "tiny-lora-triage" / "20260101-000000-0000"
    fake.mkdir(parents=True, exist_ok=True)
    (fake / "manifest.json").write_text(json.dumps({"status": "interrupted"}))
    assert_user_error(tb(repo, "train", "--recipe", DPO, "--from-run", str(fake)),
                      "is 'interrupted', not completed")
    (fake / "manifest.json").write_text(json.dumps({"status": "completed"}))
    (fake / "resolved.yaml").write_text(yaml.safe_dump(
        {"meta": {"model": {"name": "mistral-7b-instruct-v0.2"}}}))
    assert_user_error(tb(repo, "train", "--recipe", DPO, "--from-run", str(fake)),
                      "fine-tuned mistral-7b-instruct-v0.2", "trains tiny-llama")
