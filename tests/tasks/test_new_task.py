"""`make new-task`: a practitioner's file of any kind becomes a task that validates and trains;
every bad input is refused before anything is written.

Each dataset is generated in the test (tests/tasks/taskdata.py), never shipped. The tasks are made
in a scratch copy of the repository (TUNEBOOK_ROOT) through the real `tunebook` CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import taskdata
import yaml

from clihelp import assert_user_error, run_tunebook, scratch_repo


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return scratch_repo(tmp_path_factory.mktemp("new-task") / "repo")


def tree(root: Path) -> dict[str, bytes]:
    """Every file under the config tree, for "nothing was written" checks."""
    return {str(p.relative_to(root)): p.read_bytes()
            for d in ("recipes", "data-templates", "eval-suites")
            for p in sorted((root / d).rglob("*")) if p.is_file()} | {
        "README.md": (root / "README.md").read_bytes()}


def new_task(root: Path, *args: str):
    return run_tunebook("new-task", *args, root=root)


KINDS = {
    "classification": (taskdata.emails_csv, "emails.csv", "mail"),
    "extraction": (taskdata.extraction_jsonl, "orders.jsonl", "orders"),
    "generation": (taskdata.generation_alpaca, "notes.json", "notes"),
    "preference": (taskdata.preference_jsonl, "pairs.jsonl", "pairs"),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_becomes_a_task_that_validates(repo: Path, tmp_path: Path, kind: str):
    make, filename, name = KINDS[kind]
    data = make(tmp_path / filename)
    r = new_task(repo, "--name", name, "--data", str(data))
    assert r.code == 0, r.text
    assert f"kind: {kind} (" in r.out, r.out  # inferred, and why
    task = yaml.safe_load((repo / "recipes" / "task" / f"{name}.yaml").read_text())
    assert task["meta"]["task"]["kind"] == kind
    splits = [repo / task["data"][s] for s in ("train", "val", "test")]
    counts = [len(p.read_text().splitlines()) for p in splits]
    assert min(counts) >= 10 and abs(counts[0] / sum(counts) - 0.8) < 0.02, counts
    rows = [json.loads(line) for line in splits[0].read_text().splitlines()]
    prompt = (repo / task["data"]["system_prompt"]).read_text().strip()
    first = (rows[0].get("messages") or rows[0].get("prompt"))[0]
    assert first == {"role": "system", "content": prompt}  # training sees evaluation's prompt
    if kind == "classification":
        assert sorted(task["data"]["labels"]) == ["billing", "hr", "sales", "technical"]
    if kind == "extraction":
        schema = json.loads((repo / task["data"]["answer_schema"]).read_text())
        assert set(schema["properties"]) == {"quantity", "product", "city", "express"}
        assert schema["properties"]["express"]["type"] == "boolean"
    suite = (repo / "eval-suites" / name / f"{name}.yaml").read_text()
    template = "generation" if kind == "preference" else kind
    assert f"include: ../_kinds/{template}.yaml" in suite
    method = "dpo" if kind == "preference" else None
    for recipe in (f"tiny-{method or 'lora'}-{name}", f"mistral7b-{method or 'qlora'}-{name}"):
        assert (repo / "recipes" / ".lock" / f"{recipe}.yaml").is_file()
        assert f"`{recipe}`" in (repo / "README.md").read_text()  # the catalogue
        v = run_tunebook("validate", "--recipe", recipe, root=repo)
        assert v.code == 0, v.text
    assert f"make demo RECIPE=tiny-{method or 'lora'}-{name}" in r.out


@pytest.mark.smoke
@pytest.mark.parametrize("kind", ["classification", "extraction"])
def test_the_tiny_recipe_smoke_trains(repo: Path, tmp_path: Path, kind: str):
    make, filename, name = KINDS[kind]
    name = f"{name}-smoke"
    assert new_task(repo, "--name", name, "--data", str(make(tmp_path / filename))).code == 0
    r = run_tunebook("smoke", "--recipe", f"tiny-lora-{name}", root=repo, timeout=900)
    assert r.code == 0 and f"ok   tiny-lora-{name}" in r.out, r.text


def test_mostly_near_duplicate_sharegpt_is_refused_naming_them(repo: Path, tmp_path: Path):
    data = taskdata.sharegpt_mostly_near_duplicates(tmp_path / "threads.jsonl")
    before = tree(repo)
    r = new_task(repo, "--name", "threads", "--data", str(data))
    assert r.code == 1 and "Traceback" not in r.text, r.text
    assert "threads.jsonl:31: dropped, near duplicate of" in r.out
    assert "30 usable rows after dropping 90 duplicate(s)" in r.err
    assert tree(repo) == before


@pytest.mark.parametrize(("args", "fragment"), [
    (["--name", "Emails"], "expected a lower-case slug"),
    (["--name", "my_task"], "expected a lower-case slug"),
    (["--name", "../evil"], "not a path"),
    (["--name", "triage"], "shipped task or suite"),
    (["--name", "safety"], "shipped task or suite"),
])
def test_bad_names_are_refused(repo: Path, tmp_path: Path, args: list[str], fragment: str):
    data = taskdata.emails_csv(tmp_path / "e.csv", n=120)
    before = tree(repo)
    assert_user_error(new_task(repo, *args, "--data", str(data)), fragment)
    assert tree(repo) == before


def test_an_existing_name_is_refused_unless_forced(repo: Path, tmp_path: Path):
    data = taskdata.emails_csv(tmp_path / "e.csv", n=200)
    assert new_task(repo, "--name", "twice", "--data", str(data)).code == 0
    prompt = repo / "data-templates" / "prompts" / "twice-system.txt"
    prompt.write_text("Edited by hand: answer with the department only.\n")
    before = tree(repo)
    assert_user_error(new_task(repo, "--name", "twice", "--data", str(data)),
                      "NAME='twice' exists", "FORCE=1")
    assert tree(repo) == before
    r = new_task(repo, "--name", "twice", "--data", str(data), "--force")
    assert r.code == 0, r.text
    assert prompt.read_text() == "Edited by hand: answer with the department only.\n"
    row = json.loads((repo / "data-templates/datasets/twice/train.jsonl").read_text()
                     .splitlines()[0])
    assert row["messages"][0]["content"] == "Edited by hand: answer with the department only."


def test_missing_file_and_missing_csv_columns_are_refused(repo: Path, tmp_path: Path):
    before = tree(repo)
    assert_user_error(new_task(repo, "--name", "ghost", "--data", str(tmp_path / "no.csv")),
                      "no such file")
    data = tmp_path / "tickets.csv"
    data.write_text("subject,body,department\nHello,Printer broken,it\n")
    assert_user_error(new_task(repo, "--name", "ghost", "--data", str(data), "--text", "message",
                               "--label", "department"),
                      "no 'message' column", "the header is: subject, body, department")
    assert tree(repo) == before


def test_malformed_rows_name_the_users_file_and_line(repo: Path, tmp_path: Path):
    data = tmp_path / "chat.jsonl"
    good = [{"messages": [{"role": "user", "content": f"question {i} " * 5},
                          {"role": "assistant", "content": f"answer {i} " * 9}]}
            for i in range(150)]
    lines = [json.dumps(r) for r in good]
    lines.insert(3, "")  # a blank line: line numbers are the file's, not the row index
    lines[7] = json.dumps({"messages": [{"role": "user", "content": "hi"},
                                        {"role": "assistant", "content": "   "}]})
    data.write_text("\n".join(lines) + "\n")
    before = tree(repo)
    r = new_task(repo, "--name", "broken", "--data", str(data))
    assert_user_error(r, "chat.jsonl:8: empty-assistant", "nothing was written")
    assert tree(repo) == before
