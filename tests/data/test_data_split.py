"""Splits: deterministic, 80/10/10, stratified by label, near-duplicate clusters kept together."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

from datahelp import chat, distinct_rows, run_cli

from tunebook.data import split
from tunebook.paths import DATA_TEMPLATES


def _hash(folder: Path) -> str:
    h = hashlib.sha256()
    for name in ("train", "val", "test"):
        h.update((folder / f"{name}.jsonl").read_bytes())
    return h.hexdigest()


def _triage_all(tmp_path: Path) -> Path:
    src = tmp_path / "triage-all.jsonl"
    src.write_text("".join((DATA_TEMPLATES / "datasets" / "triage" / f"{s}.jsonl").read_text()
                           for s in ("test", "train", "val")))
    return src


def test_split_of_shipped_data_is_reproducible_and_stratified(tmp_path: Path, capsys):
    src = _triage_all(tmp_path)
    before = src.read_bytes()
    code, out = run_cli(capsys, "split", "--data", str(src), "--out", str(tmp_path / "a"),
                        "--recipe", "mistral7b-lora-triage")
    assert code == 0, out
    code, out2 = run_cli(capsys, "split", "--data", str(src), "--out", str(tmp_path / "b"),
                         "--recipe", "mistral7b-lora-triage")
    assert code == 0
    assert _hash(tmp_path / "a") == _hash(tmp_path / "b")
    assert out.splitlines()[-1] == out2.splitlines()[-1]  # the printed split hash
    assert src.read_bytes() == before
    counts = {}
    for name in ("train", "val", "test"):
        rows = [json.loads(x) for x in (tmp_path / "a" / f"{name}.jsonl").read_text()
                .splitlines()]
        counts[name] = Counter(r["messages"][-1]["content"] for r in rows)
    assert sum(counts["train"].values()) == 544
    assert sum(counts["val"].values()) == sum(counts["test"].values()) == 68
    for name in ("train", "val", "test"):
        assert len(set(counts[name].values())) == 1  # 170 per label -> equal in every split
    # A different seed gives a different, equally valid split.
    code, _ = run_cli(capsys, "split", "--data", str(src), "--out", str(tmp_path / "c"),
                      "--recipe", "mistral7b-lora-triage", "--seed", "7")
    assert code == 0 and _hash(tmp_path / "c") != _hash(tmp_path / "a")


def test_near_duplicate_clusters_stay_in_one_split():
    rows = distinct_rows(200, seed=5)
    texts = [r["messages"][1]["content"] + " " + r["messages"][2]["content"] for r in rows]
    # Five clusters of five near-copies each.
    for c in range(5):
        for k in range(1, 5):
            texts.append(texts[c] + f" v{k}")
    where = split.assign(texts, seed=1, threshold=0.8)
    for c in range(5):
        members = [where[c]] + [where[200 + c * 4 + k] for k in range(4)]
        assert len(set(members)) == 1, members
    counts = Counter(where)
    assert counts[0] == 180 and counts[1] == 22 and counts[2] == 23 or \
        abs(counts[0] - 180) <= 5


def test_label_field_stratifies(tmp_path: Path, capsys):
    rows = []
    for i, r in enumerate(distinct_rows(100, seed=9)):
        rows.append({"instruction": r["messages"][1]["content"],
                     "output": r["messages"][2]["content"],
                     "input": "spam" if i % 4 == 0 else "ham"})
    src = tmp_path / "x.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out = run_cli(capsys, "split", "--data", str(src), "--out", str(tmp_path / "o"),
                        "--label-field", "input")
    assert code == 0, out
    val = [json.loads(x) for x in (tmp_path / "o" / "val.jsonl").read_text().splitlines()]
    assert Counter(r["input"] for r in val) == {"ham": 8, "spam": 2}
    code, out = run_cli(capsys, "split", "--data", str(src), "--out", str(tmp_path / "o"),
                        "--label-field", "nope")
    assert code == 2 and f"{src}:1: no 'nope' key" in out


def test_split_refuses_malformed_input(tmp_path: Path, capsys):
    src = tmp_path / "x.jsonl"
    src.write_text(json.dumps(chat("a", "b")) + "\n{broken\n")
    code, out = run_cli(capsys, "split", "--data", str(src), "--out", str(tmp_path / "o"))
    assert code == 2 and f"{src}:2: bad-json" in out
    assert not (tmp_path / "o").exists()


def test_allocation_keeps_every_split_non_empty():
    assert split._allocate(3, split.RATIOS) == [1, 1, 1]
    assert split._allocate(10, split.RATIOS) == [8, 1, 1]
    assert sum(split._allocate(683, split.RATIOS)) == 683
