"""The four row formats tunebook trains on, and the per-row checks that say a row *is* one.

A format is detected from a row's keys (``messages`` -> chat, ``instruction`` + ``output`` ->
instruction, ``prompt`` + ``chosen`` + ``rejected`` -> preference, ``prompt`` + ``completion``
-> completion). Its JSON Schema lives in ``data-templates/<format>/schema.json`` (checked with
jsonschema); what a schema cannot say -- system only first, user/assistant alternation, the last
turn from the assistant, no empty assistant content (Axolotl silently drops such rows), chosen
!= rejected -- is checked here in Python.

Every problem is a ``(code, message)``; the data checks add the file and line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from typing import Any

from tunebook import paths
from tunebook.errors import did_you_mean

FORMATS = ("chat", "instruction", "completion", "preference")
ROLES = ("system", "user", "assistant")
# What other tools call the roles; a hint, since `tunebook convert` maps them.
ROLE_HINTS = {"human": "user", "gpt": "assistant", "model": "assistant", "bot": "assistant",
              "function": "assistant", "tool": "assistant"}


@cache
def schema(fmt: str) -> dict:
    return json.loads((paths.DATA_TEMPLATES / fmt / "schema.json").read_text(encoding="utf-8"))


@cache
def validator(fmt: str):
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema(fmt))


def detect(row: Any) -> str | None:
    """The format a row's keys say it is, or None."""
    if not isinstance(row, dict):
        return None
    if "messages" in row:
        return "chat"
    if "prompt" in row and ("chosen" in row or "rejected" in row):
        return "preference"
    if "instruction" in row:
        return "instruction"
    if "prompt" in row and "completion" in row:
        return "completion"
    return None


def describe_keys(row: dict) -> str:
    keys = sorted(row)[:6]
    return "{" + ", ".join(repr(k) for k in keys) + ("…" if len(row) > 6 else "") + "}"


def _content(m: Any) -> str:
    return m.get("content", "") if isinstance(m, dict) and isinstance(m.get("content"), str) else ""


def row_text(row: dict) -> str:
    """The text that makes a row what it is, for duplicates and leaks: everything the model
    reads or writes except the system prompt (which every row of a task shares)."""
    fmt = detect(row)
    if fmt == "chat":
        return "\n".join(_content(m) for m in row.get("messages") or []
                         if isinstance(m, dict) and m.get("role") != "system")
    if fmt == "preference":
        prompt = row.get("prompt")
        parts = ([_content(m) for m in prompt if isinstance(m, dict) and m.get("role") != "system"]
                 if isinstance(prompt, list) else [str(prompt)])
        return "\n".join([*parts, _content(row.get("chosen")), _content(row.get("rejected"))])
    if fmt == "instruction":
        return "\n".join(str(row.get(k, "")) for k in ("instruction", "input", "output"))
    if fmt == "completion":
        return f"{row.get('prompt', '')}\n{row.get('completion', '')}"
    return json.dumps(row, sort_keys=True, ensure_ascii=False)


def all_text(row: Any) -> str:
    """Every string in a row, system prompt included: what the PII scan reads."""
    msgs = row.get("messages") if type(row) is dict and len(row) == 1 else None
    if type(msgs) is list and all(type(m) is dict and m.keys() == _MSG_KEYS
                                  and type(m["role"]) is str and type(m["content"]) is str
                                  for m in msgs):
        # A plain chat row (the common case): the same strings in the same order as the walk.
        return "\n".join(v for m in msgs for v in m.values())
    return walk_text(row)


def walk_text(row: Any) -> str:
    """Every string anywhere in ``row``, in document order: ``all_text``'s general path."""
    out: list[str] = []
    stack = [row]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return "\n".join(reversed(out))


def answer(row: dict) -> str | None:
    """The final answer of a row: the last assistant message (chat), output, completion, or
    the chosen reply. What labels and answer schemas are checked against."""
    fmt = detect(row)
    if fmt == "chat":
        msgs = row.get("messages") or []
        return _content(msgs[-1]) if msgs else None
    if fmt == "instruction":
        return row.get("output")
    if fmt == "completion":
        return row.get("completion")
    if fmt == "preference":
        return _content(row.get("chosen"))
    return None


def messages(row: dict) -> list[dict]:
    """The row as chat messages, for rendering with a chat template (length checks)."""
    fmt = detect(row)
    if fmt == "chat":
        return row["messages"]
    if fmt == "instruction":
        user = row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")
        sys_msg = [{"role": "system", "content": row["system"]}] if row.get("system") else []
        return [*sys_msg, {"role": "user", "content": user},
                {"role": "assistant", "content": row["output"]}]
    if fmt == "completion":
        return [{"role": "user", "content": row["prompt"]},
                {"role": "assistant", "content": row["completion"]}]
    if fmt == "preference":
        # The longer of the two replies decides whether the pair fits.
        longer = max((row["chosen"], row["rejected"]), key=lambda m: len(m["content"]))
        return [*row["prompt"], longer]
    return []


_ROLESET = frozenset(ROLES)
_MSG_KEYS = frozenset({"role", "content"})


def _plain_message(m: Any, roles: frozenset[str] = _ROLESET) -> bool:
    return (type(m) is dict and m.keys() == _MSG_KEYS and type(m["content"]) is str
            and type(m["role"]) is str and m["role"] in roles)


_ASSISTANT = frozenset({"assistant"})


def surely_valid(fmt: str, row: Any) -> bool:
    """True only for rows that certainly satisfy the format's JSON Schema.

    Why: jsonschema costs ~50 us a row, most of the gate's time on 100k rows. This check is
    strictly narrower than the schema (plain ``{role, content}`` messages, no optional keys),
    so a True never lets an invalid row through; anything else goes to jsonschema, which
    stays the authority and writes the messages. ``tests/data/test_data_fuzz.py`` checks
    "surely valid implies schema-valid" on random rows.
    """
    if fmt == "chat":
        msgs = row.get("messages") if type(row) is dict and len(row) == 1 else None
        return (type(msgs) is list and len(msgs) >= 2
                and all(_plain_message(m) for m in msgs))
    if fmt == "preference":
        if type(row) is not dict or row.keys() != {"prompt", "chosen", "rejected"}:
            return False
        prompt = row["prompt"]
        return (type(prompt) is list and len(prompt) >= 1
                and all(_plain_message(m) for m in prompt)
                and _plain_message(row["chosen"], _ASSISTANT)
                and _plain_message(row["rejected"], _ASSISTANT))
    return False


def _schema_problem(fmt: str, row: dict) -> tuple[str, str] | None:
    from jsonschema.exceptions import best_match

    if surely_valid(fmt, row):
        return None
    err = best_match(validator(fmt).iter_errors(row))
    if err is None:
        return None
    where = "/".join(str(p) for p in err.absolute_path) or "row"
    if err.absolute_path and err.absolute_path[-1] == "role":
        role = err.instance
        hint = (f"; '{role}' is '{ROLE_HINTS[role]}' in the chat format "
                "(`tunebook convert --from sharegpt` maps it)"
                if isinstance(role, str) and role in ROLE_HINTS
                else did_you_mean(str(role), ROLES))
        return "bad-role", f"{where}: role {role!r} is not one of {', '.join(ROLES)}{hint}"
    if err.validator == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        allowed = sorted(err.schema.get("properties", {}))
        key = extra[0] if extra else "?"
        return "schema", (f"{where}: unknown key {key!r}{did_you_mean(key, allowed)}; "
                          f"the {fmt} format allows {', '.join(allowed)}")
    msg = err.message if len(err.message) < 160 else err.message[:157] + "…"
    return "schema", f"{where}: {msg} (data-templates/{fmt}/schema.json)"


def _turns(msgs: list[dict], *, last: str, where: str) -> Iterator[tuple[str, str]]:
    """System only first; user/assistant alternate starting with user; ends with ``last``."""
    expect = "user"
    for i, m in enumerate(msgs):
        role = m["role"]
        if role == "system":
            if i != 0:
                yield "system-not-first", (f"{where}/{i}: a system message is only allowed "
                                           "first; merge it into the first system message")
            continue
        if role != expect:
            prev = msgs[i - 1]["role"] if i else None
            why = (f"two '{role}' turns in a row" if prev == role
                   else f"'{role}' where '{expect}' was expected")
            yield "not-alternating", (f"{where}/{i}: {why}; turns must alternate user, "
                                      "assistant, … after an optional system message")
            return
        expect = "assistant" if role == "user" else "user"
        if role == "assistant" and not m["content"].strip():
            yield "empty-assistant", (f"{where}/{i}: empty assistant content; Axolotl would "
                                      "drop this row silently (no trainable tokens)")
        elif role == "user" and not m["content"].strip():
            yield "empty-user", f"{where}/{i}: empty user content"
    non_system = [m for m in msgs if m["role"] != "system"]
    if not non_system:
        yield "last-not-" + last, f"{where}: no {last} turn"
    elif non_system[-1]["role"] != last:
        yield "last-not-" + last, (f"{where}: the last turn is '{non_system[-1]['role']}'; "
                                   f"it must be the {last}'s")


def plain_chat_ok(row: Any) -> bool:
    """True only for chat rows ``check_row`` finds nothing wrong with: plain ``{role, content}``
    messages (a subset of the schema, see ``surely_valid``), an optional system message first,
    then user and assistant alternating, none empty, ending with the assistant. One pass over
    the messages for the rows nearly every file is made of; anything else takes the full path.
    ``tests/data/test_data_fuzz.py`` checks "plain_chat_ok implies no problem" on random rows.
    """
    if type(row) is not dict or len(row) != 1:
        return False
    msgs = row.get("messages")
    if type(msgs) is not list or len(msgs) < 2:
        return False
    expect = "user"
    for i, m in enumerate(msgs):
        if type(m) is not dict or m.keys() != _MSG_KEYS:
            return False
        role, content = m["role"], m["content"]
        if type(role) is not str or type(content) is not str:
            return False
        if role == "system":
            if i:
                return False
            continue
        if role != expect or not content.strip():
            return False
        expect = "assistant" if role == "user" else "user"
    return expect == "user"


def check_row(fmt: str, row: Any) -> list[tuple[str, str]]:
    """Every format problem of one parsed row, [] when it is a valid ``fmt`` row."""
    if fmt == "chat" and plain_chat_ok(row):
        return []
    if not isinstance(row, dict):
        kind = type(row).__name__ if row is not None else "null"
        return [("not-object", f"expected a JSON object, got {kind}")]
    found = detect(row)
    if found is None:
        known = ("messages", "instruction", "input", "output", "prompt", "completion", "chosen",
                 "rejected", "system")
        hint = next((did_you_mean(str(k), known) for k in row if did_you_mean(str(k), known)),
                    "")
        return [("unknown-format", f"keys {describe_keys(row)} match no format{hint}; expected "
                 "'messages' (chat), 'instruction'+'output', 'prompt'+'completion' or "
                 "'prompt'+'chosen'+'rejected'")]
    if found != fmt:
        return [("mixed-formats", f"a {found} row in a {fmt} file (keys {describe_keys(row)}); "
                 "one file holds one format")]
    problem = _schema_problem(fmt, row)
    if problem:
        return [problem]
    out: list[tuple[str, str]] = []
    if fmt == "chat":
        out += _turns(row["messages"], last="assistant", where="messages")
    elif fmt == "preference":
        out += _turns(row["prompt"], last="user", where="prompt")
        for key in ("chosen", "rejected"):
            if not row[key]["content"].strip():
                out.append(("empty-assistant", f"{key}: empty reply"))
        a, b = row["chosen"]["content"], row["rejected"]["content"]
        if a.strip() and " ".join(a.lower().split()) == " ".join(b.lower().split()):
            out.append(("identical-pair", "chosen and rejected are the same reply; the pair "
                        "teaches nothing (DPO loss is constant)"))
    elif fmt == "instruction":
        if not row["output"].strip():
            out.append(("empty-assistant", "output: empty; nothing to learn from this row"))
        if not row["instruction"].strip():
            out.append(("empty-user", "instruction: whitespace only"))
    elif fmt == "completion" and not row["completion"].strip():
        out.append(("empty-assistant", "completion: empty; nothing to learn from this row"))
    return out
