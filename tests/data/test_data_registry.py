"""The registry of data checks: every code and every data.checks key belongs to one check, the
report derives from the registry (a new unit shows up in the verdict, the counts, the lines and
the thresholds without touching the report), and the streaming parts keep their promises."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
from datahelp import chat, distinct_rows, jsonl

from tunebook.data import checks, formats, neardup
from tunebook.data.check import base, engine, near, problems, registry, store
from tunebook.schema import DataChecks

REPORT_SETTINGS = {"max_errors_per_code"}  # data.checks keys that shape the output, not a check


def test_every_code_belongs_to_one_check():
    seen: dict[str, str] = {}
    for c in registry.REGISTRY:
        assert c.severity in (base.MALFORMED, base.GATED), c.name
        assert c.codes and c.reports, c.name
        for code in c.codes:
            assert code not in seen, f"{code}: {seen.get(code)} and {c.name}"
            seen[code] = c.name
    assert set(seen) == checks.MALFORMED | checks.GATED
    assert not checks.MALFORMED & checks.GATED


def test_every_threshold_key_belongs_to_one_check():
    declared: list[str] = []
    for c in registry.REGISTRY:
        if c.severity == base.GATED:
            assert c.threshold in DataChecks.model_fields, c.name
        else:
            assert c.threshold is None, c.name
        declared += [k for k in (c.threshold, *c.params) if k]
    assert sorted(declared) == sorted(set(declared)), "a key read by two checks"
    assert set(declared) | REPORT_SETTINGS == set(DataChecks.model_fields)


def test_thresholds_in_the_report_are_the_schema_values(tmp_path: Path):
    path = jsonl(tmp_path / "d.jsonl", distinct_rows(3))
    report = checks.check_path(path, {"data": {"checks": {"max_pii": 3}}})
    assert isinstance(report.checks, DataChecks)
    thresholds = report.to_dict()["thresholds"]
    assert thresholds["max_pii"] == 3
    assert {k: v for k, v in thresholds.items() if k in DataChecks.model_fields} == {
        k: v for k, v in DataChecks(max_pii=3).model_dump().items() if k not in REPORT_SETTINGS}


class Shouting(base.Check):
    """A new check, as a unit of its own: answers written in capitals."""

    name = "shouting"
    codes = ("shouting",)
    severity = base.GATED
    threshold = "max_too_long"  # any data.checks key would do for the test
    reports = "answers in capital letters"

    def observe(self, chunk: Any, ctx: Any) -> list[int]:
        return [k for k, r in enumerate(chunk.rows) if (formats.answer(r) or "").isupper()]

    def finish(self, work: Any, partials: list, ctx: Any) -> None:
        lines = work.valid_lines()
        for start, found in partials:
            for k in found:
                line = int(lines[start + k])
                work.report.details[self.name].append({"line": line})
                work.report.add(line, "shouting", "the answer is in capitals")


def test_a_new_unit_is_all_a_new_check_needs(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(registry, "REGISTRY", [*registry.REGISTRY, Shouting()])
    rows = distinct_rows(4)
    rows[2] = chat("Is it on?", "YES IT IS ON")
    path = jsonl(tmp_path / "d.jsonl", rows)
    report = checks.check_path(path)
    assert report.exit_code == 1
    assert report.failures() == ["1 shouting > max_too_long=0"]
    assert f"{path}:3: shouting: the answer is in capitals" in report.lines()
    data = report.to_dict()
    assert data["shouting"] == 1 and data["files"][0]["shouting"] == [{"line": 3}]
    assert "FAILED: 1 shouting > max_too_long=0" in report.summary()


def test_spill_lists_keep_order_past_memory(monkeypatch):
    monkeypatch.setattr(problems, "SPILL_AT", 5)
    items = [{"line": i} for i in range(25_037)]
    spill = problems.Spill(items[:3])
    spill.extend(items[3:])
    assert len(spill) == len(items) and spill == items and list(spill) == items
    assert spill._file is not None  # the tail went to disk
    assert spill[2] == items[2] and spill[-1] == items[-1]


def test_ranges_start_at_line_starts_and_cover_the_file(tmp_path: Path):
    rng = random.Random(4)
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"".join(b"x" * rng.randint(0, 300) + b"\n" for _ in range(500)) + b"tail")
    data = path.read_bytes()
    for chunk in (1, 7, 64, 1000, 1 << 20):
        spans = engine.ranges(path, len(data), chunk)
        assert spans[0][0] == 0 and spans[-1][1] == len(data)
        assert all(a < b for a, b in spans)
        assert all(b == c for (_, b), (c, _) in zip(spans, spans[1:], strict=False))
        assert all(data[a - 1 : a] == b"\n" for a, _ in spans[1:])


def test_rows_are_reread_by_offset(tmp_path: Path):
    rows = distinct_rows(5)
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"\r\n".join(json.dumps(r).encode() for r in rows) + b"\r\n\n{oops\n")
    table = checks.check_path(path).files[0].rows
    assert isinstance(table, store.RowTable) and len(table) == 6
    assert [r.obj for r in table][:5] == rows and table[5].raw == "{oops" and not table[5].ok
    assert table[1].line == 2 and table[5].line == 7


def test_streamed_band_keys_equal_the_in_memory_index():
    """The keys the checks keep per row are the Index's, whose candidates equal
    datasketch.MinHashLSH's (test_data_neardup.py)."""
    rng = random.Random(9)
    texts = [" ".join(rng.choice(["alpha", "beta", "gamma", "délta", "e"]) for _ in
                      range(rng.randint(0, 200))) for _ in range(300)]
    normalised = [neardup.normalise(t) for t in texts]
    for threshold in (0.7, 0.8, 0.9):
        want = neardup.Index.build(texts).keys(threshold)
        assert np.array_equal(near.band_keys(normalised, threshold), want)
