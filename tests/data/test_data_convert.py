"""Converters: ShareGPT round-trips; Alpaca, OpenAI and CSV map to the chat format; bad input
names file:line; the input is never modified."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datahelp import run_cli

from tunebook.data import checks, converters
from tunebook.errors import UserError

SHAREGPT = [
    {"conversations": [
        {"from": "system", "value": "You are Voltline's assistant."},
        {"from": "human", "value": "My earbuds won't pair."},
        {"from": "gpt", "value": "Hold both buttons for ten seconds, then pair again."},
        {"from": "human", "value": "Still nothing."},
        {"from": "gpt", "value": "Then let's book a free repair under Support > Warranty."},
    ]},
    {"conversations": [
        {"from": "human", "value": "Do you ship to Canada?"},
        {"from": "gpt", "value": "Yes, in three to five business days."},
        {"from": "human", "value": "And the cost?"},
        {"from": "gpt", "value": "Shipping to Canada is free over $50."},
        {"from": "human", "value": "Great, thanks."},
        {"from": "gpt", "value": "Happy to help!"},
    ]},
]


@pytest.mark.parametrize("layout", ["json", "jsonl"])
def test_sharegpt_round_trips(tmp_path: Path, capsys, layout):
    src = tmp_path / f"in.{layout}"
    if layout == "json":
        src.write_text(json.dumps(SHAREGPT, indent=2))
    else:
        src.write_text("".join(json.dumps(r) + "\n" for r in SHAREGPT))
    before = src.read_bytes()
    out = tmp_path / "chat.jsonl"
    code, text = run_cli(capsys, "convert", "--data", str(src), "--from", "sharegpt", "--out",
                         str(out))
    assert code == 0, text
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [m["role"] for m in rows[0]["messages"]] == ["system", "user", "assistant", "user",
                                                       "assistant"]
    assert converters.to_sharegpt(rows) == SHAREGPT
    assert src.read_bytes() == before
    assert checks.check_path(out).exit_code == 0


def test_sharegpt_bad_role_names_the_row(tmp_path: Path, capsys):
    src = tmp_path / "in.jsonl"
    bad = {"conversations": [{"from": "humman", "value": "hi"}, {"from": "gpt", "value": "yo"}]}
    src.write_text(json.dumps(SHAREGPT[0]) + "\n" + json.dumps(bad) + "\n{nope\n")
    code, text = run_cli(capsys, "convert", "--data", str(src), "--from", "sharegpt", "--out",
                         str(tmp_path / "o.jsonl"))
    assert code == 2 and "Traceback" not in text
    assert f"{src}:2: conversations/0: 'from' is 'humman'" in text and "'human'" in text
    assert f"{src}:3: not valid JSON" in text
    assert not (tmp_path / "o.jsonl").exists()


def test_alpaca_array(tmp_path: Path):
    src = tmp_path / "alpaca.json"
    src.write_text(json.dumps([
        {"instruction": "Summarise the ticket.", "input": "Laptop won't boot.", "output": "Boot"},
        {"instruction": "Name a colour.", "input": "", "output": "Blue"},
        {"instruction": "Be brief.", "input": "Hi", "output": "Hello", "system": "Be nice."},
    ]))
    out = tmp_path / "o.jsonl"
    assert converters.convert("alpaca", src, out) == 3
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert rows[0]["messages"] == [
        {"role": "user", "content": "Summarise the ticket.\n\nLaptop won't boot."},
        {"role": "assistant", "content": "Boot"}]
    assert rows[1]["messages"][0]["content"] == "Name a colour."
    assert rows[2]["messages"][0] == {"role": "system", "content": "Be nice."}
    assert checks.check_path(out).exit_code == 0


def test_alpaca_missing_output_is_named_by_index(tmp_path: Path):
    src = tmp_path / "alpaca.json"
    src.write_text(json.dumps([{"instruction": "a", "output": "b"}, {"instruction": "c"}]))
    with pytest.raises(UserError, match=r"alpaca\.json:1: 'output' is missing"):
        converters.convert("alpaca", src, tmp_path / "o.jsonl")


def test_openai_drops_names_keeps_weights_refuses_tools(tmp_path: Path):
    src = tmp_path / "oa.jsonl"
    good = {"messages": [{"role": "user", "content": "hi", "name": "bob"},
                         {"role": "assistant", "content": "hello", "weight": 1}]}
    src.write_text(json.dumps(good) + "\n")
    out = tmp_path / "o.jsonl"
    converters.convert("openai", src, out)
    assert json.loads(out.read_text()) == {"messages": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello", "weight": 1}]}
    tool = {"messages": [{"role": "user", "content": "x"}, {"role": "tool", "content": "y"}]}
    src.write_text(json.dumps(good) + "\n" + json.dumps(tool) + "\n")
    with pytest.raises(UserError, match=r"oa\.jsonl:2: messages/1: role 'tool'"):
        converters.convert("openai", src, out)


def test_csv_with_aliases_and_multiline_cells(tmp_path: Path):
    src = tmp_path / "d.csv"
    src.write_text('System,Question,Answer\n"Be kind.","Where is my order?","On its way.\n'
                   'Tracking to follow."\n,Do you price match?,Yes.\n', encoding="utf-8")
    out = tmp_path / "o.jsonl"
    assert converters.convert("csv", src, out) == 2
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert rows[0]["messages"][0] == {"role": "system", "content": "Be kind."}
    assert rows[0]["messages"][2]["content"] == "On its way.\nTracking to follow."
    assert [m["role"] for m in rows[1]["messages"]] == ["user", "assistant"]


def test_csv_errors_name_the_line(tmp_path: Path):
    src = tmp_path / "d.csv"
    src.write_text("user,assistant\na,b\n\"multi\nline\",\nc,d,e\n")
    with pytest.raises(UserError) as e:
        converters.convert("csv", src, tmp_path / "o.jsonl")
    assert "d.csv:4: empty assistant cell" in str(e.value)
    assert "d.csv:5: 1 more cells than header columns" in str(e.value)
    src.write_text("prompt_text,reply\na,b\n")
    with pytest.raises(UserError, match=r"d\.csv:1: no 'user' column"):
        converters.convert("csv", src, tmp_path / "o.jsonl")


def test_convert_refuses_to_overwrite_its_input(tmp_path: Path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(SHAREGPT[0]) + "\n")
    code, text = run_cli(capsys, "convert", "--data", str(src), "--from", "sharegpt", "--out",
                         str(src))
    assert code == 2 and "input file" in text
    assert json.loads(src.read_text()) == SHAREGPT[0]


@pytest.mark.parametrize("source", ["sharegpt", "alpaca", "openai", "csv"])
def test_binary_and_empty_input_is_a_user_error(tmp_path: Path, source):
    for content in (b"", b"\xff\xfe\x00garbage", b"[1, 2"):
        src = tmp_path / "in.bin"
        src.write_bytes(content)
        with pytest.raises(UserError):
            converters.convert(source, src, tmp_path / "o.jsonl")
