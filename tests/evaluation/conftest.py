"""Fixtures of the evaluation tests (see evalfakes.py for the synthetic evaluations)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from evalfakes import CONFIG, write_eval

from tunebook.rundir import RunDir


@pytest.fixture
def make_run(tmp_path: Path):
    """``make_run(base_scores, tuned_scores)`` -> a RunDir with baseline, eval and trainer log."""

    counter = iter(range(1000))

    def make(base: dict[str, list[float]], tuned: dict[str, list[float]], *,
             config: dict[str, Any] | None = None, tuned_spec: dict[str, Any] | None = None,
             prompt_salt: str = "") -> RunDir:
        root = tmp_path / f"r{next(counter)}" / "runs" / "tiny-lora-triage"
        base_dir = write_eval(root / "baseline" / "k1", base, kind="base")
        run_path = root / "20260101-000000-abcd"
        write_eval(run_path / "eval", tuned, kind="tuned", spec=tuned_spec,
                   prompt_salt=prompt_salt, baseline=base_dir)
        (run_path / "resolved.yaml").write_text(
            "# Effective configuration\n" + yaml.safe_dump(config or CONFIG))
        (run_path / "axolotl.yaml").write_text(yaml.safe_dump(
            {"base_model": "/nowhere/base", "output_dir": str(run_path / "output")}))
        (run_path / "manifest.json").write_text(json.dumps({
            "recipe": "tiny-lora-triage", "run_id": run_path.name,
            # as composition records them: ``++`` added to a key no recipe file sets
            "overrides": ["++axolotl.max_steps=1", "axolotl.lora_r=8"],
            "created": "2026-01-01T00:00:00", "git": {"sha": "deadbeef", "dirty": False},
            "packages": {"lm_eval": "0.4.11"}, "hardware": {"cpu_count": 2, "gpus": []},
            "data_files": {"data-templates/datasets/triage/train.jsonl": "ab" * 32},
            "data_gate": {"passed": True, "summary": "data-check: train 544. PASSED."}}))
        state = run_path / "output" / "checkpoint-20"
        state.mkdir(parents=True)
        history = [{"step": s, "loss": 3.0 / s} for s in range(1, 21)]
        history += [{"step": s, "eval_loss": 3.2 / s} for s in (1, 10, 20)]
        (state / "trainer_state.json").write_text(json.dumps({"log_history": history}))
        return RunDir.open(run_path)

    return make
