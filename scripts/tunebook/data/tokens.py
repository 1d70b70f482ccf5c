"""Token counts as the trainer sees them: one counter for the data gate and the planner.

A conversation is rendered with the tokenizer's chat template (what Axolotl's ``chat_template``
dataset type tokenizes) and counted with the Rust tokenizer's batch call. A template that rejects
a system message (Gemma's) gets it merged into the first user turn, as Axolotl users do. Without
a template the turns' contents are joined with newlines and the tokenizer's special tokens are
added. A row trains one sequence, except a preference pair, which trains two (prompt + chosen and
prompt + rejected).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tunebook import env
from tunebook.data import formats


def conversations(row: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """The sequences one row of any format trains on, as chat messages."""
    if formats.detect(row) == "preference":
        prompt = row["prompt"]
        if isinstance(prompt, str):
            prompt = [{"role": "user", "content": prompt}]
        return [[*prompt, row[key] if isinstance(row[key], dict) else
                 {"role": "assistant", "content": str(row[key])}]
                for key in ("chosen", "rejected")]
    return [formats.messages(row)]


def _merge_system(conv: list[dict]) -> list[dict]:
    if not conv or conv[0]["role"] != "system":
        return conv
    rest = [dict(m) for m in conv[1:]]
    if rest and rest[0]["role"] == "user":
        rest[0]["content"] = f"{conv[0]['content']}\n\n{rest[0]['content']}"
    return rest


def render_texts(tokenizer: Any, convs: list[list[dict]]) -> tuple[list[str], int]:
    """The conversations as the model sees them; (texts, how many needed the system merged)."""
    if not getattr(tokenizer, "chat_template", None):
        return ["\n".join(m["content"] for m in c) for c in convs], 0
    try:
        return list(tokenizer.apply_chat_template(convs, tokenize=False)), 0
    except Exception:  # a template that rejects one of them: render one by one
        pass
    out, merged = [], 0
    for c in convs:
        try:
            out.append(tokenizer.apply_chat_template(c, tokenize=False))
        except Exception:
            merged += 1
            out.append(tokenizer.apply_chat_template(_merge_system(c), tokenize=False))
    return out, merged


def count(tokenizer: Any, texts: list[str], add_special: bool | None = None) -> list[int]:
    """Tokens of each rendered text, through the Rust tokenizer's batch call when there is one.
    Special tokens are added only when there is no template (a chat template writes them
    itself), unless ``add_special`` says otherwise."""
    if add_special is None:
        add_special = not getattr(tokenizer, "chat_template", None)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "encode_batch_fast"):
        # no fork follows while counting, so the Rust tokenizer may use every core
        with env.scoped({"TOKENIZERS_PARALLELISM": "true"}):
            return [len(e.ids) for e in backend.encode_batch_fast(
                texts, add_special_tokens=add_special)]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=add_special)["input_ids"]]


def sequence_lengths(tokenizer: Any, rows: Iterable[dict[str, Any]],
                     chunk: int = 4096) -> list[int]:
    """Tokens of every sequence the rows train, in order (two per preference pair)."""
    out: list[int] = []
    batch: list[list[dict]] = []
    for row in rows:
        batch.extend(conversations(row))
        if len(batch) >= chunk:
            out += count(tokenizer, render_texts(tokenizer, batch)[0])
            batch = []
    if batch:
        out += count(tokenizer, render_texts(tokenizer, batch)[0])
    return out
