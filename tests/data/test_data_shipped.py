"""The shipped task datasets: what other engineers train and evaluate on. Sizes, splits, honest
labels, length budgets, and that the seeded generator reproduces the committed files."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import pytest

from clihelp import load_script
from tunebook.paths import DATA_TEMPLATES, ROOT

DATASETS = DATA_TEMPLATES / "datasets"
TASKS = {"support": 600, "triage": 600, "clauses": 600, "support-pref": 300}
SPLITS = ("train", "val", "test")


def _rows(task: str, split: str) -> list[dict]:
    return [json.loads(x) for x in (DATASETS / task / f"{split}.jsonl").read_text("utf-8")
            .splitlines()]


@pytest.mark.parametrize("task", sorted(TASKS))
def test_sizes_and_80_10_10(task):
    n = {s: len(_rows(task, s)) for s in SPLITS}
    total = sum(n.values())
    assert total >= TASKS[task]
    assert abs(n["train"] - 0.8 * total) <= 2
    assert abs(n["val"] - 0.1 * total) <= 2 and abs(n["test"] - 0.1 * total) <= 2


@pytest.mark.parametrize("task", ["support", "triage", "clauses"])
def test_chat_rows_start_with_the_task_system_prompt(task):
    prompt = (DATA_TEMPLATES / "prompts" / f"{task}-system.txt").read_text("utf-8")
    for split in SPLITS:
        for row in _rows(task, split):
            assert row["messages"][0] == {"role": "system", "content": prompt}


def test_preference_prompts_use_the_support_prompt_and_differ():
    prompt = (DATA_TEMPLATES / "prompts" / "support-system.txt").read_text("utf-8")
    for split in SPLITS:
        for row in _rows("support-pref", split):
            assert row["prompt"][0] == {"role": "system", "content": prompt}
            assert row["chosen"]["content"] != row["rejected"]["content"]
            assert row["chosen"]["content"].endswith("The Voltline Team")
            assert "The Voltline Team" not in row["rejected"]["content"]


def test_triage_labels_balanced_short_and_exact():
    for split in SPLITS:
        rows = _rows("triage", split)
        counts = Counter(r["messages"][-1]["content"] for r in rows)
        assert set(counts) == {"low", "medium", "high", "critical"}
        assert max(counts.values()) / min(counts.values()) <= 1.5
        for r in rows:
            assert len(r["messages"][1]["content"].split()) < 60


def test_triage_labels_follow_cues():
    """Spot-check the cue rules the generator documents: a hazard word is always critical."""
    for split in SPLITS:
        for r in _rows("triage", split):
            text, label = r["messages"][1]["content"].lower(), r["messages"][-1]["content"]
            if any(w in text for w in ("smoking", "sparked", "caught fire", "unauthorized")):
                assert label == "critical", text
            if label == "low":
                assert "?" in text, text  # low tickets are questions


def test_length_budgets():
    for split in SPLITS:
        for r in _rows("support", split):
            for m in r["messages"]:
                if m["role"] == "assistant":
                    assert len(m["content"].split()) < 120
        for r in _rows("clauses", split):
            assert len(r["messages"][1]["content"].split()) < 350


def test_clause_answers_follow_the_schema_and_the_text():
    from jsonschema import Draft202012Validator

    schema = json.loads((DATASETS / "clauses" / "answer.schema.json").read_text("utf-8"))
    validator = Draft202012Validator(schema)
    nulls = Counter()
    for split in SPLITS:
        for r in _rows("clauses", split):
            answer = json.loads(r["messages"][-1]["content"])
            validator.validate(answer)
            text = r["messages"][1]["content"]
            if answer["governing_law"]:
                assert answer["governing_law"] in text
            assert ("renew" in text and "automatic" in text) or not answer["auto_renewal"]
            nulls.update(k for k, v in answer.items() if v is None)
    # Absent clauses really occur, so null is a learnable answer, not a constant.
    assert all(nulls[k] > 10 for k in ("governing_law", "term_months", "notice_period_days",
                                       "liability_cap"))


def test_generator_reproduces_the_committed_files(tmp_path, monkeypatch):
    gen = load_script(ROOT / "scripts" / "generate_datasets.py", "gen")
    monkeypatch.setattr(gen, "OUT", tmp_path)
    assert gen.main([]) == 0
    for task in TASKS:
        for split in SPLITS:
            made = hashlib.sha256((tmp_path / task / f"{split}.jsonl").read_bytes()).hexdigest()
            shipped = hashlib.sha256((DATASETS / task / f"{split}.jsonl").read_bytes()).hexdigest()
            assert made == shipped, f"{task}/{split}: run scripts/generate_datasets.py"


@pytest.mark.parametrize("fmt", ["chat", "instruction", "completion", "preference"])
def test_format_templates_are_complete_and_their_examples_pass(fmt):
    from jsonschema import Draft202012Validator

    from tunebook.data import checks

    folder = DATA_TEMPLATES / fmt
    Draft202012Validator.check_schema(json.loads((folder / "schema.json").read_text("utf-8")))
    readme = (folder / "README.md").read_text("utf-8")
    assert "Use it when" in readme and "Axolotl" in readme and "Recipe keys" in readme
    report = checks.check_path(folder / "example.jsonl")
    assert report.exit_code == 0, report.lines()
    assert report.format() == fmt


def test_task_files_name_existing_prompts_and_schemas():
    import yaml

    for task in sorted((ROOT / "recipes" / "task").glob("[!_]*.yaml")):
        data = yaml.safe_load(task.read_text("utf-8")).get("data", {})
        for key in ("system_prompt", "answer_schema", "train", "val", "test"):
            if data.get(key):
                assert (ROOT / data[key]).is_file(), f"{task.name}: data.{key}"
