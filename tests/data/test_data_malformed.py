"""A corpus of broken files: each gives the right exit code, the right line and code, no traceback.

Exit 2: the file cannot be read as its format. Exit 1: it parses, a data.checks threshold fails.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datahelp import SYSTEM, chat, distinct_rows, run_cli

from tunebook.data import checks


def _lines(*rows) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows)


GOOD = chat("How do I reset my password?", "Open Settings, then Security, then Reset.")
GOOD2 = chat("What are your opening hours on Sunday?", "We open from ten until four on Sundays.")
GOOD3 = chat("Can I return an opened kettle?", "Yes, within 30 days if all the parts are there.")
PREF_PROMPT = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Hi?"}]


def _deep(depth: int) -> bytes:
    return ('{"messages": ' + "[" * depth + "]" * depth + "}").encode()


# (id, file name, bytes, exit code, line (None = whole file), code)
CASES = [
    ("empty-file", "d.jsonl", b"", 2, None, "empty-file"),
    ("whitespace-only", "d.jsonl", b"\n  \n\t\n", 2, None, "empty-file"),
    ("latin-1", "d.jsonl", _lines(GOOD, '{"messages": [{"role": "user", "content": "caf\xe9"}]}'
                                  .encode("latin-1")), 2, 2, "not-utf8"),
    ("nul-byte", "d.jsonl", _lines(GOOD, GOOD2, b'{"messages": []}\x00'), 2, 3, "nul-byte"),
    ("truncated-line", "d.jsonl", _lines(GOOD, json.dumps(GOOD2).encode()[:40]), 2, 2,
     "bad-json"),
    ("trailing-comma", "d.jsonl", _lines(GOOD, b'{"messages": [{"role": "user", "content": "a"},'
                                         b' {"role": "assistant", "content": "b"},]}'), 2, 2,
     "bad-json"),
    ("two-objects-one-line", "d.jsonl", _lines(json.dumps(GOOD).encode() * 2), 2, 1, "bad-json"),
    ("nan-constant", "d.jsonl", _lines(GOOD, b'{"messages": NaN}'), 2, 2, "bad-json"),
    ("utf8-bom", "d.jsonl", b"\xef\xbb\xbf" + _lines(GOOD), 2, 1, "bad-json"),
    ("array-in-jsonl", "d.jsonl", json.dumps([GOOD, GOOD2]).encode(), 2, 1,
     "json-array-in-jsonl"),
    ("line-is-array", "d.jsonl", _lines(GOOD, [GOOD2]), 2, 2, "not-object"),
    ("line-is-string", "d.jsonl", _lines(GOOD, "just text"), 2, 2, "not-object"),
    ("line-is-null", "d.jsonl", _lines(GOOD, None), 2, 2, "not-object"),
    ("unknown-format", "d.jsonl", _lines({"text": "hello"}), 2, 1, "unknown-format"),
    ("misspelt-messages", "d.jsonl", _lines({"mesages": []}), 2, 1, "unknown-format"),
    ("mixed-formats", "d.jsonl", _lines(GOOD, {"instruction": "a", "output": "b"}), 2, 2,
     "mixed-formats"),
    ("content-not-string", "d.jsonl",
     _lines(GOOD, {"messages": [{"role": "user", "content": 5},
                                {"role": "assistant", "content": "x"}]}), 2, 2, "schema"),
    ("missing-content", "d.jsonl",
     _lines({"messages": [{"role": "user"}, {"role": "assistant", "content": "x"}]}), 2, 1,
     "schema"),
    ("unknown-message-key", "d.jsonl",
     _lines(GOOD, {"messages": [{"role": "user", "content": "a", "contnet": "b"},
                                {"role": "assistant", "content": "x"}]}), 2, 2, "schema"),
    ("sharegpt-role", "d.jsonl",
     _lines(GOOD, GOOD2, {"messages": [{"role": "human", "content": "a"},
                                       {"role": "gpt", "content": "b"}]}), 2, 3, "bad-role"),
    ("system-not-first", "d.jsonl",
     _lines({"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "s"},
                          {"role": "assistant", "content": "b"}]}), 2, 1, "system-not-first"),
    ("not-alternating", "d.jsonl",
     _lines(GOOD, {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
                                {"role": "assistant", "content": "c"}]}), 2, 2,
     "not-alternating"),
    ("starts-with-assistant", "d.jsonl",
     _lines({"messages": [{"role": "assistant", "content": "a"},
                          {"role": "user", "content": "b"}]}), 2, 1, "not-alternating"),
    ("last-turn-user", "d.jsonl",
     _lines(GOOD, {"messages": [{"role": "system", "content": "s"},
                                {"role": "user", "content": "b"}]}), 2, 2, "last-not-assistant"),
    ("last-turn-user-multi", "d.jsonl",
     _lines(GOOD, {"messages": [{"role": "user", "content": "a"},
                                {"role": "assistant", "content": "b"},
                                {"role": "user", "content": "c"}]}), 2, 2,
     "last-not-assistant"),
    ("empty-assistant", "d.jsonl", _lines(GOOD, chat("question", "")), 2, 2, "empty-assistant"),
    ("whitespace-assistant", "d.jsonl", _lines(GOOD, GOOD2, chat("question", " \n\t ")), 2, 3,
     "empty-assistant"),
    ("empty-user", "d.jsonl", _lines(chat("   ", "answer")), 2, 1, "empty-user"),
    ("identical-pair", "d.jsonl",
     _lines({"prompt": PREF_PROMPT, "chosen": {"role": "assistant", "content": "Sure thing."},
             "rejected": {"role": "assistant", "content": "sure  THING."}}), 2, 1,
     "identical-pair"),
    ("preference-prompt-ends-assistant", "d.jsonl",
     _lines({"prompt": [*PREF_PROMPT, {"role": "assistant", "content": "x"}],
             "chosen": {"role": "assistant", "content": "a"},
             "rejected": {"role": "assistant", "content": "b"}}), 2, 1, "last-not-user"),
    ("instruction-empty-output", "d.jsonl",
     _lines({"instruction": "Summarise", "input": "", "output": " "}), 2, 1, "empty-assistant"),
    ("completion-missing-key", "d.jsonl", _lines({"prompt": "a", "completion": 3}), 2, 1,
     "schema"),
    ("deeply-nested", "d.jsonl", _lines(GOOD, _deep(200)), 2, 2, "too-deep"),
    ("nested-past-recursion-limit", "d.jsonl", _lines(GOOD, _deep(100_000)), 2, 2, "too-deep"),
    ("json-array-bad-element", "d.json",
     json.dumps([GOOD, GOOD2, {"messages": [{"role": "user", "content": "a"}]}]).encode(), 2, 2,
     "schema"),
    # -- parses, but a threshold says no: exit 1 ----------------------------------------------
    ("huge-row", "d.jsonl", _lines(GOOD, chat("x" * (1 << 20), "y")), 1, 2, "too-long"),
    ("exact-duplicate", "d.jsonl", _lines(GOOD, GOOD2, chat("HOW do I reset my  password?",
                                                            GOOD["messages"][2]["content"])),
     1, 3, "exact-duplicate"),
    ("near-duplicate", "d.jsonl",
     _lines(GOOD2, chat("What is the refund window for annual plans on the Pro tier?",
                        "The refund window for annual plans is thirty days from purchase."),
            chat("What's the refund window for annual plans on the Pro tier?",
                 "The refund window for annual plans is thirty days from purchase.")), 1, 3,
     "near-duplicate"),
    ("pii-email", "d.jsonl", _lines(GOOD, chat("Mail me at jane.doe@example.com", "Will do.")),
     1, 2, "pii"),
    ("pii-card", "d.jsonl", _lines(chat("My card is 4111 1111 1111 1111", "Thanks."), GOOD), 1,
     1, "pii"),
    ("pii-phone", "d.jsonl", _lines(GOOD, GOOD2, chat("Call me on +1 415-555-0132", "Sure.")),
     1, 3, "pii"),
    ("pii-iban", "d.jsonl", _lines(chat("Refund to GB82 WEST 1234 5698 7654 32", "Done."), GOOD),
     1, 1, "pii"),
]


@pytest.mark.parametrize(("name", "filename", "content", "code", "line", "error"), CASES,
                         ids=[c[0] for c in CASES])
def test_malformed_file(tmp_path: Path, capsys, name, filename, content, code, line, error):
    path = tmp_path / filename
    path.write_bytes(content)
    report = checks.check_path(path)
    assert report.exit_code == code, report.lines()
    hits = [p for p in report.problems() if p.code == error]
    assert hits, f"{error} not in {report.lines()}"
    assert hits[0].line == line
    # The CLI prints it as path:line: code: message and exits with the same code.
    exit_code, out = run_cli(capsys, "data-check", "--data", str(path), "--json",
                             str(tmp_path / "r.json"))
    assert exit_code == code, out
    where = f"{path}:{line}: " if line is not None else f"{path}: "
    assert f"{where}{error}: " in out, out
    assert "Traceback" not in out
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["exit_code"] == code
    assert {"line": line, "code": error} in [{"line": e["line"], "code": e["code"]}
                                             for e in data["errors"]]
    assert path.read_bytes() == content  # never touched


def test_corpus_covers_every_check():
    assert len(CASES) >= 40
    with_config = {"unknown-label", "bad-answer", "label-imbalance", "leak"}  # tests below
    assert {c[5] for c in CASES} | with_config == checks.MALFORMED | checks.GATED


TRIAGE_CONFIG = {"data": {"format": "chat", "labels": ["low", "high"]}}


def _rows(*pairs):
    return [chat(f"ticket {i}: {u} " + "x" * i, a) for i, (u, a) in enumerate(pairs)]


def test_unknown_label_is_malformed(tmp_path: Path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(_lines(*_rows(("site down", "high"), ("question", "lowish"))))
    report = checks.check_path(path, TRIAGE_CONFIG)
    assert report.exit_code == 2
    [p] = [p for p in report.problems() if p.code in checks.MALFORMED]
    assert (p.line, p.code) == (2, "unknown-label")
    assert "'low'" in p.message  # did you mean


def test_label_imbalance_fails_the_gate(tmp_path: Path, capsys):
    rows = [chat(f"outage number {i} in region {i * 13}", "high") for i in range(4)]
    rows.append(chat("what are the store hours on sunday", "low"))
    path = tmp_path / "t.jsonl"
    path.write_bytes(_lines(*rows))
    report = checks.check_path(path, TRIAGE_CONFIG)
    assert report.exit_code == 1
    assert report.files[0].labels == {"low": 1, "high": 4}
    assert any("label imbalance 4.0" in f for f in report.failures())
    assert f"{path}: label-imbalance: " in "\n".join(report.lines())
    # A looser threshold passes the same file.
    loose = {"data": {**TRIAGE_CONFIG["data"], "checks": {"max_label_imbalance": 4}}}
    assert checks.check_path(path, loose).exit_code == 0


def test_answers_must_follow_the_answer_schema(tmp_path: Path):
    path = tmp_path / "c.jsonl"
    good = json.dumps({"governing_law": "Ireland", "term_months": 12, "notice_period_days": None,
                       "liability_cap": None, "auto_renewal": False})
    path.write_bytes(_lines(chat("contract one", good), chat("contract two", "{not json"),
                            chat("contract three", json.dumps({"governing_law": "X"}))))
    config = {"data": {"format": "chat",
                       "answer_schema": "data-templates/datasets/clauses/answer.schema.json"}}
    report = checks.check_path(path, config)
    assert report.exit_code == 2
    assert [(p.line, p.code) for p in report.problems()] == [(2, "bad-answer"), (3, "bad-answer")]


def test_leaks_between_splits(tmp_path: Path, capsys):
    rows = distinct_rows(30, seed=3)
    train, val, test = rows[:20], rows[20:25], rows[25:]
    val = [*val, train[4]]  # exact leak
    near = json.loads(json.dumps(train[7]))
    near["messages"][2]["content"] += " ok"
    test = [*test, near]  # near leak
    paths = {}
    for name, part in (("train", train), ("val", val), ("test", test)):
        paths[name] = tmp_path / f"{name}.jsonl"
        paths[name].write_bytes(_lines(*part))
    report = checks.check_files([(k, v) for k, v in paths.items()], {"data": {"format": "chat"}})
    assert report.exit_code == 1
    assert report.count("leaks") == 2
    by_path = {(p.path.split("/")[-1], p.line) for p in report.problems() if p.code == "leak"}
    assert by_path == {("val.jsonl", 6), ("test.jsonl", 6)}
    leak = [x for x in report.leaks if x["path"].endswith("test.jsonl")][0]
    assert leak["of_line"] == 8 and 0.8 <= leak["similarity"] < 1


def test_luhn_invalid_card_and_order_numbers_are_not_pii(tmp_path: Path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(_lines(chat("Card 4111 1111 1111 1112 failed, order VL-48291", "Sorry."),
                            chat("Cap is US$500,000 and 1,000,000 EUR", "Noted.")))
    report = checks.check_path(path)
    assert report.exit_code == 0, report.lines()
    assert report.count("pii") == 0


def test_missing_file_is_a_user_error(tmp_path: Path, capsys):
    code, out = run_cli(capsys, "data-check", "--data", str(tmp_path / "nope.jsonl"))
    assert code == 2
    assert "no such file" in out and "Traceback" not in out


def test_crlf_and_blank_lines_are_fine(tmp_path: Path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"\r\n".join(json.dumps(r).encode() for r in (GOOD, GOOD2, GOOD3))
                     + b"\r\n\r\n")
    report = checks.check_path(path)
    assert report.exit_code == 0, report.lines()
    assert report.rows() == 3


def test_errors_are_capped_per_code_with_a_count(tmp_path: Path, capsys):
    rows = [chat(f"question number {i} about something else entirely {i * 7}", "")
            for i in range(15)]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = checks.check_path(path)
    report.checks = report.checks.model_copy(update={"max_errors_per_code": 4})
    lines = report.lines()
    assert sum(": empty-assistant: " in x for x in lines) == 4
    assert any("and 11 more" in x for x in lines)
    # The default cap (10) through the CLI.
    code, out = run_cli(capsys, "data-check", "--data", str(path))
    assert code == 2
    assert out.count(": empty-assistant: ") == 10 and "and 5 more" in out


def test_line_numbers_count_blank_lines(tmp_path: Path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(_lines(GOOD) + b"\n\n" + _lines(chat("q", "")))
    report = checks.check_path(path)
    assert [p.line for p in report.problems()] == [4]


def test_fix_writes_a_clean_copy_and_leaves_the_input(tmp_path: Path, capsys):
    rows = distinct_rows(6)
    dup = json.loads(json.dumps(rows[1]))
    dup["messages"][1]["content"] = dup["messages"][1]["content"].upper()
    near = json.loads(json.dumps(rows[2]))
    near["messages"][2]["content"] += " Indeed."
    bad = chat("a question", "  ")
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in [*rows, dup, near, bad]) + "{oops\n")
    before = src.read_bytes()
    out = tmp_path / "clean.jsonl"
    code, text = run_cli(capsys, "data-check", "--data", str(src), "--fix", str(out))
    assert code == 2  # the input itself is malformed
    assert src.read_bytes() == before
    for line, why in ((7, "exact-duplicate"), (8, "near-duplicate"), (9, "empty-assistant"),
                      (10, "bad-json")):
        assert f"{src}:{line}: dropped ({why})" in text, text
    assert [json.loads(x) for x in out.read_text().splitlines()] == rows
    assert checks.check_path(out).exit_code == 0
    # --fix onto the input itself is refused.
    code, text = run_cli(capsys, "data-check", "--data", str(src), "--fix", str(src))
    assert code == 2 and "never edits data in place" in text
    assert src.read_bytes() == before


def test_fix_needs_a_single_file(capsys):
    code, out = run_cli(capsys, "data-check", "--recipe", "mistral7b-lora-triage", "--fix",
                        "x.jsonl")
    assert code == 2 and "--data" in out


def test_console_script_end_to_end_no_traceback(tmp_path: Path):
    """The real `tunebook` executable on a few corpus files: exit codes and no traceback."""
    import os
    import subprocess
    import sys

    tunebook = Path(sys.executable).parent / "tunebook"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}

    def run_tunebook(*args: str):
        proc = subprocess.run([str(tunebook), *args], capture_output=True, text=True, env=env,
                              timeout=300)
        proc.code, proc.out, proc.text = proc.returncode, proc.stdout, proc.stdout + proc.stderr
        return proc

    picks = {c[0]: c for c in CASES}
    for name in ("latin-1", "nested-past-recursion-limit", "array-in-jsonl", "pii-card"):
        _, filename, content, code, line, error = picks[name]
        path = tmp_path / f"{name}-{filename}"
        path.write_bytes(content)
        result = run_tunebook("data-check", "--data", str(path))
        assert result.code == code, result.text
        assert "Traceback" not in result.text
        assert f"{path}:{line}: {error}: " in result.out


def test_pii_in_a_system_prompt_is_found(tmp_path: Path):
    path = tmp_path / "d.jsonl"
    row = chat("How do I reset my password?", "Use the link.",
               system="Escalate to ops@corp.example")
    path.write_bytes(_lines(row))
    report = checks.check_path(path)
    assert report.exit_code == 1 and report.count("pii") == 1


def test_jsonl_whose_first_row_is_an_array_is_read_line_by_line(tmp_path: Path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(_lines([GOOD], GOOD2, GOOD3))
    report = checks.check_path(path)
    assert [(p.line, p.code) for p in report.problems()] == [(1, "not-object")]
    assert report.rows() == 3


def test_misspelt_key_gets_a_suggestion(tmp_path: Path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(_lines({"mesages": [{"role": "user", "content": "a"}]}))
    [p] = checks.check_path(path).problems()
    assert "did you mean 'messages'" in p.message
