"""Token counts of a recipe's data for the time estimate, cached under ``.cache/plan``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tunebook import paths
from tunebook.errors import UserError


def _row_texts(row: dict[str, Any]) -> list[list[dict[str, str]]]:
    """The conversations one JSONL row trains on: one for chat rows, two for preference pairs."""
    if "messages" in row:
        return [row["messages"]]
    if "chosen" in row and "rejected" in row:
        prompt = row.get("prompt") or []
        if isinstance(prompt, str):
            prompt = [{"role": "user", "content": prompt}]
        convs = []
        for key in ("chosen", "rejected"):
            ans = row[key]
            ans = ans if isinstance(ans, dict) else {"role": "assistant", "content": str(ans)}
            convs.append([*prompt, ans])
        return convs
    if "text" in row:
        return [[{"role": "user", "content": str(row["text"])}]]
    raise UserError("a data.train row has none of messages / prompt+chosen+rejected / text")


def count_tokens(path: Path, tokenizer: Any, seq_len: int) -> int:
    """Tokens the trainer sees in one epoch: each conversation rendered with the tokenizer's chat
    template (or its contents joined, when it has none), capped at ``seq_len``."""
    total = 0
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{paths.rel(path)}:{lineno}: not JSON ({e.msg}); "
                                "run make data-check") from None
            for conv in _row_texts(row):
                n = _conv_tokens(conv, tokenizer)
                total += min(n, seq_len)
    return total


def _conv_tokens(conv: list[dict[str, str]], tokenizer: Any) -> int:
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(conv, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return len(ids)
    return sum(len(tokenizer.encode(m.get("content", ""), add_special_tokens=False))
               for m in conv) + 2 * len(conv)


def _tokenizer_key(tokenizer: Any) -> str:
    parts = [str(getattr(tokenizer, "name_or_path", type(tokenizer).__name__)),
             str(len(tokenizer) if hasattr(tokenizer, "__len__") else ""),
             str(getattr(tokenizer, "chat_template", "") or "")]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def cached_token_count(path: Path, tokenizer: Any, seq_len: int,
                       cache_dir: Path | None = None) -> tuple[int, bool]:
    """``count_tokens`` cached under ``.cache/plan/`` by data hash + tokenizer + seq_len.

    Returns (tokens, hit)."""
    data_hash = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    key = f"tokens-{data_hash}-{_tokenizer_key(tokenizer)}-{seq_len}.json"
    d = cache_dir or (paths.CACHE / "plan")
    f = d / key
    if f.is_file():
        try:
            return int(json.loads(f.read_text())["tokens"]), True
        except (ValueError, KeyError):
            pass
    n = count_tokens(path, tokenizer, seq_len)
    d.mkdir(parents=True, exist_ok=True)
    tmp = f.with_suffix(".tmp")
    tmp.write_text(json.dumps({"tokens": n, "data": paths.rel(path)}))
    tmp.replace(f)
    return n, False


def count_recipe_tokens(config: dict[str, Any], tokenizer: Any = None,
                        split: str = "train") -> tuple[int | None, str]:
    """Tokens per epoch of the recipe's ``data.<split>``, with the recipe's tokenizer."""
    train = (config.get("data") or {}).get(split)
    if not train:
        return None, f"data.{split} is not set"
    path = Path(train) if Path(train).is_absolute() else paths.ROOT / train
    if not path.is_file():
        return None, f"{train} does not exist yet"
    if tokenizer is None:
        try:
            from tunebook.twins import tokenizer_for
            tokenizer = tokenizer_for(config)
        except Exception as e:  # noqa: BLE001 - a missing tokenizer must not stop the memory plan
            return None, f"no tokenizer ({type(e).__name__}: {str(e).splitlines()[0][:80]})"
    seq = int((config.get("axolotl") or {}).get("sequence_len") or 10**9)
    n, hit = cached_token_count(path, tokenizer, seq)
    who = str(getattr(tokenizer, "name_or_path", "tokenizer"))
    twin = " (a tiny twin's tokenizer: counts are approximate)" if "twins" in who else ""
    return n, f"{train} with {paths.rel(who) if '/' in who else who}{twin}" + (
        ", cached" if hit else "")
