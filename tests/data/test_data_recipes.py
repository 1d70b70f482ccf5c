"""The shipped datasets pass the gate of every recipe that uses them; check_recipe is the
function `tunebook train` calls before launching, so a failing gate must say no."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from datahelp import run_cli, tokenizer

from tunebook.compose import compose_recipe, recipe_names
from tunebook.data import checks
from tunebook.data.check import lengths

# One recipe per task (each task's data, labels, answer schema and sequence_len).
RECIPES = {"triage": "mistral7b-lora-triage", "support": "mistral7b-qlora-support",
           "clauses": "qwen7b-lora-clauses", "support-pref": "llama8b-dpo-support"}


@pytest.mark.parametrize("task", sorted(RECIPES))
def test_shipped_data_passes_the_gate(task):
    config = compose_recipe(RECIPES[task]).config
    assert config["meta"]["task"]["name"] == task
    report = checks.check_recipe(config, tokenizer(), name=RECIPES[task])
    assert report.passed, report.lines() + [report.summary()]
    assert report.exit_code == 0
    assert [f.role for f in report.files] == ["train", "val", "test"]
    assert all(f.tokens and f.tokens["max"] <= config["axolotl"]["sequence_len"]
               for f in report.files)
    d = report.to_dict()
    for key in ("rows", "format", "errors", "exact_duplicates", "near_duplicates", "leaks",
                "pii", "too_long", "thresholds"):
        assert key in d
    assert d["rows"] >= (300 if task == "support-pref" else 600)
    assert "PASSED" in report.summary()


def test_every_recipe_points_at_shipped_data():
    for name in recipe_names():
        data = compose_recipe(name).config["data"]
        for split in ("train", "val", "test"):
            assert (checks.paths.ROOT / data[split]).is_file(), (name, split)


def _scratch_config(tmp_path: Path, recipe: str) -> dict:
    config = json.loads(json.dumps(compose_recipe(recipe).config))
    for split in ("train", "val", "test"):
        dst = tmp_path / f"{split}.jsonl"
        shutil.copy(checks.paths.ROOT / config["data"][split], dst)
        config["data"][split] = str(dst)
    return config


def test_check_recipe_says_no_to_a_leak_and_to_too_long_rows(tmp_path: Path):
    config = _scratch_config(tmp_path, "mistral7b-lora-triage")
    train = Path(config["data"]["train"])
    test_row = Path(config["data"]["test"]).read_text().splitlines()[3]
    train.write_text(train.read_text() + test_row + "\n")
    report = checks.check_recipe(config, tokenizer())
    assert not report.passed and report.exit_code == 1
    assert report.count("leaks") == 1
    assert "FAILED" in report.summary() and "max_leaks=0" in report.summary()
    # A sequence_len shorter than the rows: Axolotl would drop them, the gate says so.
    config["axolotl"]["sequence_len"] = 64
    report = checks.check_recipe(config, tokenizer())
    assert report.count("too_long") > 600
    assert any("max_too_long=0" in f for f in report.failures())


def test_check_recipe_is_exit_2_on_malformed_data(tmp_path: Path):
    config = _scratch_config(tmp_path, "qwen7b-lora-clauses")
    val = Path(config["data"]["val"])
    val.write_text(val.read_text() + '{"messages": [}\n')
    report = checks.check_recipe(config, tokenizer())
    assert report.exit_code == 2 and not report.passed
    bad = report.malformed()
    assert [(p.path, p.line, p.code) for p in bad] == [(str(val), 67, "bad-json")]
    assert "MALFORMED" in report.summary()


def test_cli_recipe_mode_with_the_twin_tokenizer(capsys, tmp_path: Path):
    """End to end through the recipe's own tokenizer (tunebook.twins.tokenizer_for)."""
    code, out = run_cli(capsys, "data-check", "--recipe", "mistral7b-lora-triage", "--json",
                        str(tmp_path / "r.json"))
    assert code == 0, out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["passed"] and report["tokenizer"] and report["thresholds"]["sequence_len"] == 512


def test_overrides_change_thresholds(capsys, tmp_path: Path):
    path = tmp_path / "pii.jsonl"
    rows = [json.loads(x) for x in
            (checks.paths.ROOT / "data-templates/datasets/triage/val.jsonl").read_text()
            .splitlines()]
    rows[0]["messages"][1]["content"] += " Reach me at sam.lee@example.org"
    rows[1]["messages"][1]["content"] += " or call +44 20 7946 0958"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out = run_cli(capsys, "data-check", "--recipe", "mistral7b-lora-triage", "--data",
                        str(path))
    assert code == 1 and ": pii: " in out and "max_pii=0" in out
    assert "sam.lee@example.org" not in out  # masked
    code, out = run_cli(capsys, "data-check", "--recipe", "mistral7b-lora-triage", "--data",
                        str(path), "--overrides", "data.checks.max_pii=5")
    assert code == 0, out
    code, out = run_cli(capsys, "data-check", "--recipe", "mistral7b-lora-triage", "--data",
                        str(path), "--overrides", "data.checks.max_pi=5")
    assert code == 2 and "Traceback" not in out


def test_sampled_length_check_gives_the_exact_verdict(tmp_path: Path, monkeypatch):
    """Big files tokenize only rows that could be too long (a token is >= 1 byte) plus a
    sample: the verdict must equal tokenizing every row."""
    config = _scratch_config(tmp_path, "mistral7b-qlora-support")
    for seq_len, skips in ((280, False), (4096, True)):
        config["axolotl"]["sequence_len"] = seq_len
        monkeypatch.setattr(lengths, "EXACT_LENGTH_ROWS", 20_000)
        exact = checks.check_recipe(config, tokenizer())
        monkeypatch.setattr(lengths, "EXACT_LENGTH_ROWS", 50)
        monkeypatch.setattr(lengths, "LENGTH_SAMPLE", 20)
        sampled = checks.check_recipe(config, tokenizer())
        assert (exact.count("too_long") > 0) is not skips
        for a, b in zip(exact.files, sampled.files, strict=True):
            assert a.too_long == b.too_long
            assert not a.tokens["sampled_percentiles"]
            assert a.tokens["counted"] == len(a.rows)
            if skips:  # nothing can exceed 4096 tokens: only the sample was tokenized
                assert b.tokens["sampled_percentiles"]
                assert b.tokens["counted"] <= 25 < len(b.rows)
