"""Blind review: seeded A/B sheets with a hidden key, and the scoring of filled sheets."""

from __future__ import annotations

import csv
import json

import pytest
from scipy.stats import binomtest

from tunebook import cli
from tunebook.errors import UserError
from tunebook.evaluation import review

N = 40
OTHER = {"general-guard": [0.0] * 10, "safety": [0.0] * 5, "format": [0.0] * 5}


@pytest.fixture
def sheet(make_run):
    run = make_run({"triage": [0.0] * N, **OTHER}, {"triage": [1.0] * N, **OTHER})
    assert cli.main(["review", "--run", str(run.path), "--n", "30"]) == 0
    return run, run.path / "review"


def rows_of(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_sheet_is_blind_seeded_and_keyed(sheet, make_run):
    run, out = sheet
    rows = rows_of(out / "sheet.csv")
    key = json.loads((out / "key.json").read_text())["items"]
    assert len(rows) == len(key) == 30
    assert list(rows[0]) == ["item", "prompt", "reference", "output_a", "output_b", "rater1",
                             "rater2", "notes"]
    sides = [k["tuned"] for k in key]
    assert 5 < sides.count("A") < 25  # both orders occur
    for row, k in zip(rows, key, strict=True):
        tuned_text = row["output_a"] if k["tuned"] == "A" else row["output_b"]
        base_text = row["output_b"] if k["tuned"] == "A" else row["output_a"]
        assert tuned_text.startswith("tuned: ") and base_text.startswith("base: ")
        assert row["prompt"] == f"ticket {k['doc_id']} of triage"
    # the sheet itself says nothing about which side is which
    assert "tuned" not in (out / "sheet.csv").read_text().replace("tuned: ", "")
    assert "<table>" in (out / "sheet.html").read_text()
    # same seed, same sheet
    first = (out / "sheet.csv").read_text()
    assert review.build_sheet(run, 30)["csv"].read_text() == first


def fill(out, rater1, rater2=None):
    key = json.loads((out / "key.json").read_text())["items"]
    rows = rows_of(out / "sheet.csv")
    for i, (row, k) in enumerate(zip(rows, key, strict=True)):
        row["rater1"] = rater1(i, k)
        row["rater2"] = rater2(i, k) if rater2 else ""
    with (out / "sheet.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_score_preference_rate_binomial_and_kappa(sheet, capsys):
    _run, out = sheet

    def tuned(k):
        return k["tuned"]

    def base(k):
        return "B" if k["tuned"] == "A" else "A"

    # rater1: tuned preferred on items 0-19, base on 20-24, ties on 25-29
    r1 = lambda i, k: tuned(k) if i < 20 else base(k) if i < 25 else "tie"  # noqa: E731
    # rater2 agrees except on items 0-3 (says base)
    r2 = lambda i, k: base(k) if i < 4 else r1(i, k)  # noqa: E731
    fill(out, r1, r2)
    assert cli.main(["review-score", "--sheet", str(out / "sheet.csv")]) == 0
    result = json.loads((out / "review-score.json").read_text())
    one = result["raters"]["rater1"]
    assert (one["tuned_preferred"], one["base_preferred"], one["ties"]) == (20, 5, 5)
    assert one["preference_rate"] == pytest.approx(0.8)
    assert one["p_value"] == pytest.approx(binomtest(20, 25).pvalue)
    assert one["p_value"] == pytest.approx(0.004077, abs=1e-6)  # 2 * P(X <= 5), X ~ B(25, .5)
    # kappa by hand: categories tuned/base/tie; rater1 = (20, 5, 5), rater2 = (16, 9, 5);
    # observed agreement 26/30; expected (20*16 + 5*9 + 5*5)/900 = 390/900
    po, pe = 26 / 30, 390 / 900
    assert result["agreement"]["cohen_kappa"] == pytest.approx((po - pe) / (1 - pe))
    assert "Cohen's kappa" in capsys.readouterr().out


def test_score_rejects_bad_cells_and_missing_key(sheet):
    _run, out = sheet
    fill(out, lambda i, k: "maybe" if i == 3 else "A")
    with pytest.raises(UserError, match=r"sheet.csv:5: rater1='maybe'; expected A, B or tie"):
        review.score_sheet(out / "sheet.csv")
    (out / "key.json").unlink()
    assert cli.main(["review-score", "--sheet", str(out / "sheet.csv")]) == 2


def test_the_sample_is_stratified_by_label(make_run, capsys):
    run = make_run({"triage": [0.0] * N, **OTHER}, {"triage": [1.0] * N, **OTHER})
    out = review.build_sheet(run, 8)
    assert out["strata"] == {"label critical": 2, "label high": 2, "label low": 2,
                             "label medium": 2}


def test_stratified_sample_by_hand():
    import random

    groups = {"a": list(range(60)), "b": list(range(60, 90)), "c": list(range(90, 100))}
    chosen = review.stratified_sample(groups, 10, random.Random(0))
    # quotas 6, 3, 1 (proportional to 60/30/10 of 100)
    assert [sum(x in g for x in chosen) for g in groups.values()] == [6, 3, 1]
    tiny = {"a": list(range(98)), "b": [98], "c": [99]}
    chosen = review.stratified_sample(tiny, 5, random.Random(0))
    assert 98 in chosen and 99 in chosen and len(chosen) == 5  # every group is seen


def test_fewer_items_than_asked_is_said_loudly(make_run, capsys):
    run = make_run({"triage": [0.0] * N, **OTHER}, {"triage": [1.0] * N, **OTHER})
    assert cli.main(["review", "--run", str(run.path)]) == 0  # asks for 100
    captured = capsys.readouterr()
    assert "WARNING: the test split has only 40 items" in captured.err
    assert "review sheet of 40 items" in captured.out


def _with_policy(make_run, policy):
    import copy

    from evalfakes import CONFIG

    config = copy.deepcopy(CONFIG)
    config["eval"]["review"] = policy
    run = make_run({"triage": [0.0] * N, **OTHER}, {"triage": [1.0] * N, **OTHER}, config=config)
    assert cli.main(["gate", "--run", str(run.path)]) == 0
    return run


def test_rubric_columns_are_scored_per_side_and_recorded_in_the_run(make_run, capsys):
    run = _with_policy(make_run, {"items": 20, "rubric": ["accuracy", "tone"],
                                  "required": False})
    out = review.build_sheet(run)
    rows = rows_of(out["csv"])
    assert list(rows[0]) == ["item", "prompt", "reference", "output_a", "output_b", "rater1",
                             "rater2", "accuracy_a", "accuracy_b", "tone_a", "tone_b", "notes"]
    key = {str(k["item"]): k["tuned"] for k in json.loads(out["key"].read_text())["items"]}
    for row in rows:
        tuned_side = key[row["item"]].lower()
        base_side = "b" if tuned_side == "a" else "a"
        row["rater1"] = tuned_side.upper()
        row[f"accuracy_{tuned_side}"], row[f"accuracy_{base_side}"] = "5", "2"
        row[f"tone_{tuned_side}"] = "4"
    with out["csv"].open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    result = review.score_sheet(out["csv"])
    assert result["rubric"] == {"accuracy": {"base": 2.0, "tuned": 5.0},
                                "tone": {"base": None, "tuned": 4.0}}
    assert result["significant"]  # 20 of 20 preferred: p = 2 * 0.5**20
    assert json.loads(run.manifest_path.read_text())["review"]["significant"] is True


def test_register_refuses_without_the_review_a_task_requires(make_run, capsys):
    from tunebook import tracking
    from tunebook.errors import CheckFailed

    run = _with_policy(make_run, {"items": 20, "rubric": [], "required": True})
    with pytest.raises(CheckFailed, match="no scored blind review"):
        tracking.register_adapter(run)
    assert cli.main(["register", "--run", str(run.path)]) == 1
    run.update_manifest(review={"significant": False, "raters": {}})
    with pytest.raises(CheckFailed, match="no significant preference"):
        tracking.register_adapter(run)
    run.update_manifest(review={"significant": True, "raters": {}})
    with pytest.raises(UserError, match="no MLflow run"):  # the review check is passed
        tracking.register_adapter(run)
