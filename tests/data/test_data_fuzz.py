"""Property-based: whatever bytes or JSON a file holds, the gate answers with an exit code and
never a traceback (the only exception it may raise is a UserError)."""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunebook.data import checks, converters
from tunebook.errors import UserError

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["messages", "role", "content", "prompt", "chosen",
                                       "rejected", "instruction", "output", "completion",
                                       "input", "system", "x"]) | st.text(max_size=5),
                      children, max_size=4),
    max_leaves=20,
)
roles = st.sampled_from(["system", "user", "assistant", "human", "gpt", "tool", ""])
messages = st.lists(st.fixed_dictionaries({"role": roles, "content": st.text(max_size=30)}),
                    max_size=5)
chat_rows = st.fixed_dictionaries({"messages": messages})

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _gate(content: bytes, name: str = "d.jsonl") -> int:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / name
        path.write_bytes(content)
        try:
            report = checks.check_path(path)
        except UserError:
            return 2
        assert report.exit_code in (0, 1, 2)
        # Every problem renders, and the report serialises.
        report.lines()
        report.summary()
        json.dumps(report.to_dict(), default=str)
        return report.exit_code


@SETTINGS
@given(st.binary(max_size=400))
def test_random_bytes(content):
    _gate(content)
    _gate(content, "d.json")


@SETTINGS
@given(st.lists(json_values, max_size=6))
def test_random_json_lines(values):
    _gate("".join(json.dumps(v) + "\n" for v in values).encode())
    _gate(json.dumps(values).encode(), "d.json")


@SETTINGS
@given(st.lists(chat_rows, min_size=1, max_size=6))
def test_random_chat_rows(rows):
    code = _gate("".join(json.dumps(r) + "\n" for r in rows).encode())
    assert code in (0, 1, 2)


@SETTINGS
@given(st.binary(max_size=300), st.sampled_from(converters.SOURCES))
def test_converters_on_random_bytes(content, source):
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "in.txt"
        src.write_bytes(content)
        with contextlib.suppress(UserError):
            converters.convert(source, src, Path(d) / "out.jsonl")


plain_or_not = st.one_of(
    st.fixed_dictionaries({"role": roles, "content": st.text(max_size=10)}),
    st.fixed_dictionaries({"role": roles, "content": json_values}),
    st.fixed_dictionaries({"role": roles, "content": st.text(max_size=5), "weight": json_values}),
    json_values,
)
rows_any = st.one_of(
    st.fixed_dictionaries({"messages": st.lists(plain_or_not, max_size=4)}),
    st.fixed_dictionaries({"messages": st.lists(plain_or_not, max_size=4), "x": json_values}),
    st.fixed_dictionaries({"prompt": st.lists(plain_or_not, max_size=3), "chosen": plain_or_not,
                           "rejected": plain_or_not}),
    json_values,
)


@SETTINGS
@given(rows_any)
def test_fast_path_never_accepts_what_the_schema_rejects(row):
    from tunebook.data import formats

    for fmt in ("chat", "preference"):
        if formats.surely_valid(fmt, row):
            assert formats.validator(fmt).is_valid(row), row


@SETTINGS
@given(rows_any)
def test_plain_chat_fast_path_never_accepts_a_row_with_a_problem(row):
    from tunebook.data import formats

    if formats.plain_chat_ok(row):
        assert formats.validator("chat").is_valid(row), row
        # the full path (the fast path bypassed) finds nothing either
        assert list(formats._turns(row["messages"], last="assistant", where="messages")) == []


@SETTINGS
@given(chat_rows)
def test_plain_chat_fast_path_accepts_every_plain_valid_row(row):
    from tunebook.data import formats

    full = [] if formats._schema_problem("chat", row) is None and not list(
        formats._turns(row["messages"], last="assistant", where="messages")) else ["x"]
    if not full and len(row["messages"]) >= 2:
        assert formats.plain_chat_ok(row), row


@SETTINGS
@given(rows_any)
def test_all_text_fast_path_equals_the_walk(row):
    from tunebook.data import formats

    assert formats.all_text(row) == formats.walk_text(row)
