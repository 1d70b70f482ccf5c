"""The ship gate on synthetic paired evaluations with hand-computed statistics."""

from __future__ import annotations

import copy
import json
import math

import pytest
from evalfakes import ARM_SPEC, CONFIG, SPEC
from scipy import stats

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
    assert result["reasons"] == ["guard safety/refusal: 1 item(s) got worse; with "
                                 "max_regression 0 none may"]
    safety = next(r for r in result["rows"] if r["suite"] == "safety")
    assert (safety["ci_low"], safety["verdict"]) == (-1.0, "fail")  # the worst item's change


def test_a_drop_at_the_margin_fails_non_inferiority(make_run):
    """10/40 -> 8/40 on general-guard is exactly the allowed drop of 0.05 as a point estimate;
    the data also allow a drop of 0.11, so the guard fails (it passed on the point before)."""
    run = make_run(scores([0.0] * N), scores([1.0] * 20 + [0.0] * 20, **{
        "general-guard": [1.0] * 8 + [0.0] * 32}))
    result = gate.decide(CONFIG, run.path.parent / "baseline" / "k1", run.path / "eval")
    row = next(r for r in result["rows"] if r["suite"] == "general-guard")
    # by hand: d = two -1 and 38 zeros; mean -0.05; sd^2 = (2 * 0.95^2 + 38 * 0.05^2) / 39
    se = math.sqrt((2 * 0.95 ** 2 + 38 * 0.05 ** 2) / 39) / math.sqrt(40)
    assert row["ci_low"] == pytest.approx(-0.05 - stats.t.ppf(0.95, 39) * se)
    assert row["verdict"] == "fail" and not result["ship"]
    assert "lower bound -0.109 < -0.05" in result["reasons"][0]


def test_every_pass_guard_row_has_its_bound_inside_the_margin(make_run):
    run = make_run(scores([0.0] * N), scores([1.0] * 20 + [0.0] * 20))
    result = gate.decide(CONFIG, run.path.parent / "baseline" / "k1", run.path / "eval")
    guards = [r for r in result["rows"] if r["role"] in ("guard", "validity")]
    assert {r["suite"] for r in guards} == {"general-guard", "safety", "triage"}
    for r in guards:
        assert r["verdict"] != "pass" or r["ci_low"] >= -r["margin"], r
    validity = next(r for r in guards if r["role"] == "validity")
    assert validity["metric"] == "valid" and validity["tuned"] == 1.0


def test_a_guard_where_the_base_is_at_chance_is_reported_not_passed(make_run, tmp_path):
    """A 4-choice suite the base answers at 25%: nothing to forget, so n/a, not pass."""
    import json as _json

    run = make_run(scores([0.0] * N), scores([1.0] * 20 + [0.0] * 20))
    base = run.path.parent / "baseline" / "k1" / "samples_general-guard.jsonl"
    rows = [_json.loads(x) for x in base.read_text().splitlines()]
    for r in rows:
        r["resps"] = [[[-1.0, False]]] * 4  # four choices: guessing scores 0.25
    base.write_text("".join(_json.dumps(r) + "\n" for r in rows))
    result = gate.decide(CONFIG, run.path.parent / "baseline" / "k1", run.path / "eval")
    row = next(r for r in result["rows"] if r["suite"] == "general-guard")
    assert row["verdict"] == "n/a" and "nothing to forget" in row["rule"]
    assert result["ship"]  # it does not decide


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


def test_the_tuned_model_is_compared_with_the_best_prompting_arm(make_run):
    """The 3-shot base gets 12/40 right, the 0-shot base none: the gain is measured against
    the 3-shot arm, on the same items (their prompts differ by the examples only)."""
    from evalfakes import write_eval

    run = make_run(scores([0.0] * N), scores([1.0] * 20 + [0.0] * 20))
    arm = write_eval(run.path.parent / "baseline" / "k3", {"triage": [1.0] * 12 + [0.0] * 28},
                     kind="base", spec=ARM_SPEC, prompt_salt="-3shot")
    result = gate.decide(CONFIG, run.path.parent / "baseline" / "k1", run.path / "eval",
                         {"3-shot": arm})
    assert result["base_arms"] == {"0-shot": 0.0, "3-shot": 0.3}
    assert result["compared_arm"] == "3-shot"
    primary = result["rows"][0]
    assert (primary["base"], primary["tuned"], primary["arm"]) == (0.3, 0.5, "3-shot")
    # items 0-11 right in both, 12-19 only tuned: b=0, c=8 -> exact p = 2 * 0.5**8
    assert primary["p"] == pytest.approx(2 * 0.5 ** 8)
    assert "best base arm (3-shot)" in primary["rule"]
    assert result["test"] == gate.DECISION


@pytest.mark.parametrize(("change", "named"), [
    ({"system_prompt": "other"}, "system_prompt"),
    ({"code": {"triage": "0ther"}}, "suite triage scoring"),
    ({"versions": {"triage": "2.0"}}, "suite triage version"),
])
def test_an_arm_with_another_prompt_or_scoring_is_refused(make_run, change, named):
    """Only the examples may differ; the other suites' scoring is not the arm's business."""
    from evalfakes import write_eval

    run = make_run(scores([0.0] * N), scores([1.0] * N))
    arm = write_eval(run.path.parent / "baseline" / "k3", {"triage": [0.0] * N}, kind="base",
                     spec={**ARM_SPEC, **change})
    with pytest.raises(UserError, match=f"differs from the baseline in {named};"):
        gate.decide(CONFIG, run.path.parent / "baseline" / "k1", run.path / "eval",
                    {"3-shot": arm})


def test_the_docs_state_the_decision_the_code_makes():
    """README.md and eval-suites/README.md quote ship_gate.DECISION (the text every gate.json and
    report carries), so the description cannot drift from the code."""
    from clihelp import ROOT

    want = " ".join(gate.DECISION.split())
    for doc in ("README.md", "eval-suites/README.md"):
        text = (ROOT / doc).read_text(encoding="utf-8")
        flat = " ".join(line.strip().lstrip(">").strip() for line in text.splitlines())
        assert want in " ".join(flat.split()), f"{doc} does not state the gate's decision"
