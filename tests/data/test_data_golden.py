"""Golden reports: the data checks give byte-for-byte the same verdicts, lines, summaries, JSON
reports, cleaned copies and splits as the files recorded in ``tests/data/golden/``.

The goldens were recorded from the in-memory data gate before it was rewritten to stream; they
are the contract the streaming implementation keeps. Recorded per case: the exit code, every
printed line, the summary, the ``--json`` report (without ``timings``, which vary) and, for single
files, what ``--fix`` writes. Temporary paths are written as ``<tmp>``. Inputs: every shipped
dataset (each recipe's train/val/test, each ``data-templates/<format>/example.jsonl``), the
malformed-file corpus of ``test_data_malformed.py``, a seeded fuzz corpus in the spirit of
``test_data_fuzz.py``, and a generated file with planted duplicates, near-duplicates, leaks and
personal data.

Re-record (only when a change of output is intended, and say why in the commit):
``PYTHONPATH=scripts .venv/bin/python tests/data/test_data_golden.py``
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import random
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from datahelp import chat, distinct_rows, tokenizer  # noqa: E402
from test_data_malformed import CASES  # noqa: E402

from tunebook import cli  # noqa: E402
from tunebook.compose import compose_recipe  # noqa: E402
from tunebook.data import checks, split  # noqa: E402
from tunebook.errors import UserError  # noqa: E402
from tunebook.paths import DATA_TEMPLATES, ROOT  # noqa: E402

GOLDEN = Path(__file__).parent / "golden"
RECIPES = {"triage": "mistral7b-lora-triage", "support": "mistral7b-qlora-support",
           "clauses": "qwen7b-lora-clauses", "support-pref": "llama8b-dpo-support"}
FORMATS = ("chat", "instruction", "completion", "preference")


# --------------------------------------------------------------------------------------------
# observing the gate
# --------------------------------------------------------------------------------------------
def _scrub(value: Any, tmp: str) -> Any:
    if isinstance(value, str):
        return value.replace(tmp, "<tmp>")
    if isinstance(value, list):
        return [_scrub(v, tmp) for v in value]
    if isinstance(value, dict):
        return {k: _scrub(v, tmp) for k, v in value.items() if k != "timings"}
    return value


def _report(report: checks.Report, tmp: str) -> dict:
    data = json.loads(json.dumps(report.to_dict(), default=str))
    return _scrub({"exit_code": report.exit_code, "lines": report.lines(),
                   "summary": report.summary(), "json": data}, tmp)


def _cli(tmp: Path, *argv: str) -> dict:
    """``tunebook <argv> --json`` in-process: exit code, stdout, the JSON report."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = cli.main([*argv, "--json", str(tmp / "report.json")])
    report = tmp / "report.json"
    data = json.loads(report.read_text("utf-8")) if report.exists() else None
    return _scrub({"exit_code": code, "stdout": out.getvalue(), "json": data}, str(tmp))


def _fix(tmp: Path, path: Path) -> dict:
    out = tmp / "fixed.jsonl"
    echoed: list[str] = []
    try:
        report = checks.check_path(path)
        dropped = checks.write_fixed(report, path, out, echo=echoed.append)
    except UserError as e:
        return {"error": _scrub(str(e), str(tmp))}
    written = out.read_bytes()
    return _scrub({"dropped": dropped, "echo": echoed,
                   "sha256": hashlib.sha256(written).hexdigest(),
                   "written": written.decode("utf-8") if len(written) < 4000 else None},
                  str(tmp))


@contextlib.contextmanager
def _tmpdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as d:
        yield Path(d).resolve()


# --------------------------------------------------------------------------------------------
# the inputs
# --------------------------------------------------------------------------------------------
def _lines(*rows: Any) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows)


def shipped() -> dict[str, dict]:
    """Every shipped dataset: each task through its recipe (labels, answer schema, leaks, token
    lengths with the tests' tokenizer), each split file alone through the CLI, each example."""
    out: dict[str, dict] = {}
    for task, recipe in sorted(RECIPES.items()):
        config = compose_recipe(recipe).config
        out[f"recipe/{recipe}"] = _report(checks.check_recipe(config, tokenizer(), name=recipe),
                                          str(ROOT))
        for s in ("train", "val", "test"):
            with _tmpdir() as tmp:
                out[f"cli/{task}/{s}"] = _cli(tmp, "data-check", "--data",
                                              str(ROOT / config["data"][s]))
    for fmt in FORMATS:
        with _tmpdir() as tmp:
            out[f"cli/example/{fmt}"] = _cli(tmp, "data-check", "--data",
                                             str(DATA_TEMPLATES / fmt / "example.jsonl"))
    return out


TRIAGE = {"data": {"format": "chat", "labels": ["low", "high"]}}
CLAUSES = {"data": {"format": "chat",
                    "answer_schema": "data-templates/datasets/clauses/answer.schema.json"}}


def _configured() -> list[tuple[str, dict | None, list[tuple[str, bytes]]]]:
    """Cases of test_data_malformed.py that need a config or several files."""
    rows = distinct_rows(30, seed=3)
    train, val, test = rows[:20], [*rows[20:25], rows[4]], list(rows[25:])
    near = json.loads(json.dumps(rows[7]))
    near["messages"][2]["content"] += " ok"
    test.append(near)
    good = json.dumps({"governing_law": "Ireland", "term_months": 12, "notice_period_days": None,
                       "liability_cap": None, "auto_renewal": False})
    imbalance = [chat(f"outage number {i} in region {i * 13}", "high") for i in range(4)]
    imbalance.append(chat("what are the store hours on sunday", "low"))
    return [
        ("unknown-label", TRIAGE, [("data", _lines(chat("ticket 0: site down ", "high"),
                                                   chat("ticket 1: question x", "lowish")))]),
        ("label-imbalance", TRIAGE, [("data", _lines(*imbalance))]),
        ("label-imbalance-loose", {"data": {**TRIAGE["data"],
                                            "checks": {"max_label_imbalance": 4}}},
         [("data", _lines(*imbalance))]),
        ("answer-schema", CLAUSES, [("data", _lines(
            chat("contract one", good), chat("contract two", "{not json"),
            chat("contract three", json.dumps({"governing_law": "X"}))))]),
        ("leaks", {"data": {"format": "chat"}}, [("train", _lines(*train)),
                                                  ("val", _lines(*val)), ("test", _lines(*test))]),
        ("thresholds", {"data": {"format": "chat", "checks": {
            "max_exact_duplicates": 5, "max_near_duplicates": 5, "max_leaks": 3, "max_pii": 9,
            "near_duplicate_threshold": 0.6, "max_errors_per_code": 2}}},
         [("train", _lines(*train)), ("val", _lines(*val)), ("test", _lines(*test))]),
    ]


def generated(n: int, seed: int, broken: bool = True) -> list[bytes]:
    """Chat rows with planted exact duplicates, near-duplicates, personal data and (``broken``)
    a few malformed lines: enough rows that chunked reading crosses many boundaries."""
    rng = random.Random(seed)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
             for _ in range(3000)]
    out: list[bytes] = []
    good: list[dict] = []
    for i in range(n):
        r = rng.random()
        if good and r < 0.03:  # exact duplicate, case changed
            row = json.loads(json.dumps(rng.choice(good)))
            row["messages"][-2]["content"] = row["messages"][-2]["content"].upper()
            out.append(json.dumps(row).encode())
            continue
        if good and r < 0.06:  # near duplicate, one word added
            row = json.loads(json.dumps(rng.choice(good)))
            row["messages"][-1]["content"] += " " + rng.choice(words)
            out.append(json.dumps(row).encode())
            continue
        if broken and r < 0.065:
            out.append(rng.choice([b'{"messages": [}', b"", b"   ", b'{"text": 1}',
                                   json.dumps(chat("q " + rng.choice(words), " ")).encode()]))
            continue
        q = " ".join(rng.choice(words) for _ in range(rng.randint(3, 25))) + "?"
        a = " ".join(rng.choice(words) for _ in range(rng.randint(5, 60))) + "."
        if rng.random() < 0.01:
            q += f" mail me at user{i}@example.com"
        if rng.random() < 0.005:
            a += " card 4111 1111 1111 1111"
        row = chat(q, a, system="You help." if i % 2 else None)
        good.append(row)
        out.append(json.dumps(row).encode())
    return out


def fuzz_inputs(seed: int = 15) -> list[tuple[str, bytes]]:
    """A seeded corpus like test_data_fuzz.py's: random bytes, random JSON, random chat rows."""
    rng = random.Random(seed)
    keys = ["messages", "role", "content", "prompt", "chosen", "rejected", "instruction",
            "output", "completion", "input", "system", "x"]
    roles = ["system", "user", "assistant", "human", "gpt", "tool", ""]

    def text(k: int) -> str:
        return "".join(rng.choice("ab c\n\t\u00e9\u2713\"\\{}[]@0123456789")
                       for _ in range(rng.randint(0, k)))

    def value(depth: int = 0) -> Any:
        pick = rng.randrange(8 if depth < 3 else 5)
        if pick == 0:
            return None
        if pick == 1:
            return rng.random() < 0.5
        if pick == 2:
            return rng.randint(-10**6, 10**6)
        if pick == 3:
            return rng.uniform(-1e3, 1e3)
        if pick == 4:
            return text(20)
        if pick == 5:
            return [value(depth + 1) for _ in range(rng.randint(0, 4))]
        return {rng.choice(keys) if rng.random() < 0.8 else text(5): value(depth + 1)
                for _ in range(rng.randint(0, 4))}

    def message() -> Any:
        if rng.random() < 0.8:
            return {"role": rng.choice(roles), "content": text(30)}
        return value(1)

    out: list[tuple[str, bytes]] = []
    for i in range(40):
        blob = rng.randbytes(rng.randint(0, 400))
        if i % 3 == 0:  # mostly text, some structure
            blob = bytes(rng.choice(b'{}[]":,\n\r \\ab01\x00\xff\xc3\xa9') for _ in blob)
        out += [("d.jsonl", blob), ("d.json", blob)]
    for _ in range(30):
        values = [value() for _ in range(rng.randint(0, 6))]
        out.append(("d.jsonl", "".join(json.dumps(v) + "\n" for v in values).encode()))
        out.append(("d.json", json.dumps(values).encode()))
    for _ in range(40):
        rows = [{"messages": [message() for _ in range(rng.randint(0, 5))]}
                for _ in range(rng.randint(1, 6))]
        out.append(("d.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode()))
    return out


def corpus(parts: tuple[str, ...] = ("malformed", "configured", "generated", "fuzz")
           ) -> dict[str, dict]:
    """The malformed corpus, the configured cases, the generated file and the fuzz corpus."""
    out: dict[str, dict] = {}
    if "malformed" in parts:
        for name, filename, content, *_ in CASES:
            with _tmpdir() as tmp:
                path = tmp / filename
                path.write_bytes(content)
                out[f"malformed/{name}"] = {**_cli(tmp, "data-check", "--data", str(path)),
                                            "fix": _fix(tmp, path)}
    if "configured" in parts:
        for name, config, files in _configured():
            with _tmpdir() as tmp:
                checked = []
                for role, content in files:
                    (tmp / f"{role}.jsonl").write_bytes(content)
                    checked.append((role, tmp / f"{role}.jsonl"))
                out[f"configured/{name}"] = _report(checks.check_files(checked, config),
                                                    str(tmp))
    if "generated" in parts:
        with _tmpdir() as tmp:
            rows = generated(3000, seed=1)
            (tmp / "all.jsonl").write_bytes(b"\n".join(rows) + b"\n")
            out["generated/all"] = {**_report(checks.check_path(tmp / "all.jsonl"), str(tmp)),
                                    "fix": _fix(tmp, tmp / "all.jsonl")}
            checked = []
            for role, lo, hi in (("train", 0, 2400), ("val", 2400, 2700), ("test", 2700, 3000)):
                (tmp / f"{role}.jsonl").write_bytes(b"\n".join(rows[lo:hi]) + b"\n")
                checked.append((role, tmp / f"{role}.jsonl"))
            out["generated/splits"] = _report(checks.check_files(checked, {"data": {
                "format": "chat", "checks": {"near_duplicate_threshold": 0.7}}}), str(tmp))
    if "fuzz" in parts:
        for i, (filename, content) in enumerate(fuzz_inputs()):
            with _tmpdir() as tmp:
                path = tmp / filename
                path.write_bytes(content)
                try:
                    out[f"fuzz/{i}"] = _report(checks.check_path(path), str(tmp))
                except UserError as e:
                    out[f"fuzz/{i}"] = {"error": _scrub(str(e), str(tmp))}
    return out


def splits(parts: tuple[str, ...] = ("triage", "generated")) -> dict[str, dict]:
    """``tunebook split`` on the shipped triage data (stratified) and on a generated file with
    near-duplicate clusters: the printed lines, which name the split digest."""
    out: dict[str, dict] = {}
    with _tmpdir() as tmp:
        if "triage" in parts:
            src = tmp / "triage-all.jsonl"
            src.write_text("".join((DATA_TEMPLATES / "datasets" / "triage" / f"{s}.jsonl")
                                   .read_text("utf-8") for s in ("test", "train", "val")))
            for seed in (0, 7):
                result = split.split_file(src, tmp / f"s{seed}", compose_recipe(
                    "mistral7b-lora-triage").config, seed=seed)
                out[f"triage/seed{seed}"] = _split_result(result, str(tmp))
        if "generated" in parts:
            gen = tmp / "gen.jsonl"
            gen.write_bytes(b"\n".join(generated(2000, seed=2, broken=False)) + b"\n")
            out["generated"] = _split_result(split.split_file(gen, tmp / "g"), str(tmp))
    return out


def _split_result(result: split.SplitFiles, tmp: str) -> dict:
    return _scrub({"digest": result.digest,
                   "files": [[str(p), n, labels] for p, n, labels in result.files]}, tmp)


SUITES: dict[str, Callable[[], dict[str, dict]]] = {
    "shipped": shipped, "corpus": corpus, "splits": splits}


# --------------------------------------------------------------------------------------------
# the tests
# --------------------------------------------------------------------------------------------
def _compare(suite: str) -> None:
    expected = json.loads((GOLDEN / f"{suite}.json").read_text("utf-8"))
    actual = json.loads(json.dumps(SUITES[suite]()))
    assert sorted(actual) == sorted(expected)
    for case in expected:
        assert actual[case] == expected[case], case


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_reports_equal_the_goldens(suite):
    _compare(suite)


def test_chunked_and_pooled_reports_equal_the_goldens(monkeypatch):
    """The same reports when every file is read in 16 KiB ranges by the worker pool (dozens
    of range boundaries, results merged from two processes): nothing depends on where a range
    ends or on which worker read it."""
    from tunebook.data.check import pool

    monkeypatch.setattr(pool, "CHUNK_BYTES", 16 << 10)
    monkeypatch.setattr(pool, "POOL_MIN_BYTES", 0)
    expected = json.loads((GOLDEN / "corpus.json").read_text("utf-8"))
    actual = json.loads(json.dumps(corpus(("generated",))))
    assert actual, "nothing checked"
    for case, value in actual.items():
        assert value == expected[case], case
    shipped_expected = json.loads((GOLDEN / "shipped.json").read_text("utf-8"))
    recipe = RECIPES["support-pref"]
    got = _report(checks.check_recipe(compose_recipe(recipe).config, tokenizer(), name=recipe),
                  str(ROOT))
    assert got == shipped_expected[f"recipe/{recipe}"]
    split_expected = json.loads((GOLDEN / "splits.json").read_text("utf-8"))
    assert splits(("generated",)) == {"generated": split_expected["generated"]}


def record() -> None:
    GOLDEN.mkdir(exist_ok=True)
    for suite, make in SUITES.items():
        (GOLDEN / f"{suite}.json").write_text(json.dumps(make(), indent=1, ensure_ascii=False)
                                              + "\n", encoding="utf-8")
        print(f"wrote {GOLDEN / f'{suite}.json'}")


if __name__ == "__main__":
    record()
