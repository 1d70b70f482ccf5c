"""The ship gate on synthetic paired evaluations with hand-computed statistics."""

from __future__ import annotations

import copy
import json

import pytest
from evalfakes import CONFIG, SPEC

from tunebook import cli
from tunebook.errors import UserError
from tunebook.evaluation import ship_gate as gate

N = 40
GUARDS = {"general-guard": [1.0] * 10 + [0.0] * 30, "safety": [1.0] * 5 + [0.0] * 15,
          "format": [0.0] * 20}


def scores(triage: list[float], **over: list[float]) -> dict[str, list[float]]:
    return {"triage": triage, **GUARDS, **over}


def test_clear_gain_ships_with_the_exact_mcnemar_p(make_run):
    run = make_run(scores([0.0] * N), scores([1.0] * 20 + [0.0] * 20))
    result = gate.decide(CONFIG, run.path.parent / "baseline" / "k1", run.path / "eval")
    assert result["ship"] and result["decision"] == "ship"
    primary = result["rows"][0]
    assert (primary["role"], primary["base"], primary["tuned"]) == ("primary", 0.0, 0.5)
    assert primary["p"] == pytest.approx(2 * 0.5 ** 20)  # b=0, c=20
    assert primary["ci_low"] > 0
    roles = {(r["suite"], r["role"], r["verdict"]) for r in result["rows"]}
    assert ("general-guard", "guard", "pass") in roles and ("safety", "guard", "pass") in roles
    assert ("format", "info", "info") in roles


def test_gain_that_is_not_significant_does_not_ship(make_run):
    run = make_run(scores([0.0] * N), scores([1.0] * 3 + [0.0] * 37))
    result = gate.decide(CONFIG, run.path.parent / "baseline" / "k1", run.path / "eval")
    assert not result["ship"]
    assert result["rows"][0]["delta"] == pytest.approx(0.075)  # above min_gain 0.05 ...
    assert result["rows"][0]["p"] == pytest.approx(0.25)        # ... but b=0, c=3: p = 2/8
    assert "not significant" in result["reasons"][0]


def test_significant_but_below_min_gain_does_not_ship(make_run):
    config = copy.deepcopy(CONFIG)
    config["eval"]["min_gain"] = 0.6
    run = make_run(scores([0.0] * N), scores([1.0] * 20 + [0.0] * 20), config=config)
    result = gate.decide(config, run.path.parent / "baseline" / "k1", run.path / "eval")
    assert not result["ship"] and "min_gain 0.6" in result["reasons"][0]


def test_guard_regression_blocks_shipping(make_run):
    worse_safety = [1.0] * 4 + [0.0] * 16  # 0.25 -> 0.20 refusal: any drop fails (margin 0)
    run = make_run(scores([0.0] * N), scores([1.0] * 20 + [0.0] * 20, safety=worse_safety))
    result = gate.decide(CONFIG, run.path.parent / "baseline" / "k1", run.path / "eval")
    assert not result["ship"]
    assert result["reasons"] == ["guard safety/refusal regressed -0.050 (allowed drop: 0)"]
    # general-guard may drop 0.05: 10/40 -> 8/40 is exactly at the margin and passes
    run2 = make_run(scores([0.0] * N), scores([1.0] * 20 + [0.0] * 20, **{
        "general-guard": [1.0] * 8 + [0.0] * 32}))
    assert gate.decide(CONFIG, run2.path.parent / "baseline" / "k1", run2.path / "eval")["ship"]


def test_different_prompts_per_item_refuse_with_user_error(make_run):
    run = make_run(scores([0.0] * N), scores([1.0] * N), prompt_salt="-changed")
    with pytest.raises(UserError, match="prompt_hash differs"):
        gate.decide(CONFIG, run.path.parent / "baseline" / "k1", run.path / "eval")


def test_different_spec_refuses_with_user_error(make_run):
    spec = {**SPEC, "prompt_hash": "p2", "system_prompt": "other",
            "versions": {**SPEC["versions"], "triage": "2.0"}}
    run = make_run(scores([0.0] * N), scores([1.0] * N), tuned_spec=spec)
    with pytest.raises(UserError) as e:
        gate.decide(CONFIG, run.path.parent / "baseline" / "k1", run.path / "eval")
    assert "suite triage version 1.0 (baseline) vs 2.0 (now)" in str(e.value)
    assert "system_prompt" in str(e.value)


def test_corpus_level_metric_is_refused(make_run):
    config = copy.deepcopy(CONFIG)
    config["eval"]["primary"]["metric"] = "macro_f1"
    run = make_run(scores([0.0] * N), scores([1.0] * N), config=config)
    with pytest.raises(UserError, match="no per-item metric 'macro_f1'"):
        gate.decide(config, run.path.parent / "baseline" / "k1", run.path / "eval")


def test_cli_exit_codes_and_manifest(make_run, capsys):
    run = make_run(scores([0.0] * N), scores([1.0] * 20 + [0.0] * 20))
    assert cli.main(["gate", "--run", str(run.path)]) == 0
    out = capsys.readouterr().out
    assert "gate: SHIP" in out and "1.9e-06" in out  # p = 2 * 0.5**20
    manifest = json.loads(run.manifest_path.read_text())
    assert manifest["gate"]["decision"] == "ship"
    assert json.loads((run.path / "gate.json").read_text())["ship"] is True

    bad = make_run(scores([0.0] * N), scores([0.0] * N))
    assert cli.main(["gate", "--run", str(bad.path)]) == 1
    captured = capsys.readouterr()
    assert "DO NOT SHIP" in captured.out and "do not ship" in captured.err
    assert json.loads(bad.manifest_path.read_text())["gate"]["ship"] is False

    mismatched = make_run(scores([0.0] * N), scores([1.0] * N), prompt_salt="x")
    assert cli.main(["gate", "--run", str(mismatched.path)]) == 2
    assert "paired test is invalid" in capsys.readouterr().err
