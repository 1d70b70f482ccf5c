"""The token lengths of a recipe's data, as the time estimate needs them.

The counting itself is ``tunebook.data.tokens`` (the one counter the data gate uses too: the
chat template applied, two sequences per preference pair); this module reads a JSONL file,
counts every sequence once with the recipe's tokenizer, and caches the lengths under
``.cache/plan`` by data hash and tokenizer, so a second ``make plan`` does not tokenize again.
The lengths are kept whole here; what Axolotl does with rows longer than ``sequence_len``
(drop or truncate) is ``tunebook.plan.batching``'s business.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tunebook import paths
from tunebook.data import formats, tokens
from tunebook.errors import UserError


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The JSONL rows of ``path``; a line that is not JSON is a ``UserError`` naming it."""
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise UserError(f"{paths.rel(path)}:{lineno}: not JSON ({e.msg}); "
                                "run make data-check") from None
    return rows


def sequence_lengths(path: Path, tokenizer: Any) -> list[int]:
    """Tokens of every sequence ``path`` trains, in file order (two per preference pair)."""
    rows = read_rows(path)
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not formats.detect(row):
            raise UserError(f"{paths.rel(path)}: row {i + 1} is none of the chat, instruction, "
                            "completion or preference formats; run make data-check")
    return tokens.sequence_lengths(tokenizer, rows)


def _tokenizer_key(tokenizer: Any) -> str:
    parts = [str(getattr(tokenizer, "name_or_path", type(tokenizer).__name__)),
             str(len(tokenizer) if hasattr(tokenizer, "__len__") else ""),
             str(getattr(tokenizer, "chat_template", "") or "")]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def cached_sequence_lengths(path: Path, tokenizer: Any,
                            cache_dir: Path | None = None) -> tuple[list[int], bool]:
    """``sequence_lengths`` cached under ``.cache/plan/`` by data hash + tokenizer.

    Returns (lengths, hit)."""
    data_hash = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    d = cache_dir or (paths.CACHE / "plan")
    f = d / f"lengths-{data_hash}-{_tokenizer_key(tokenizer)}.json"
    if f.is_file():
        try:
            return [int(n) for n in json.loads(f.read_text())["lengths"]], True
        except (ValueError, KeyError, TypeError):
            pass  # a damaged entry is counted again
    lengths = sequence_lengths(path, tokenizer)
    d.mkdir(parents=True, exist_ok=True)
    tmp = f.with_suffix(".tmp")
    tmp.write_text(json.dumps({"data": paths.rel(path), "lengths": lengths}))
    tmp.replace(f)
    return lengths, False


def recipe_lengths(config: dict[str, Any], tokenizer: Any = None,
                   split: str = "train") -> tuple[list[int] | None, str]:
    """Sequence lengths of the recipe's ``data.<split>`` with the recipe's tokenizer (the one
    the data gate counts with: ``tunebook.twins.tokenizer_for(config, full=False)``), and a
    sentence saying where they came from (or why there are none)."""
    name = (config.get("data") or {}).get(split)
    if not name:
        return None, f"data.{split} is not set"
    path = Path(name) if Path(name).is_absolute() else paths.ROOT / name
    if not path.is_file():
        return None, f"{name} does not exist yet"
    if tokenizer is None:
        try:
            from tunebook.twins import tokenizer_for
            tokenizer = tokenizer_for(config, full=False)
        except Exception as e:  # noqa: BLE001 - a missing tokenizer must not stop the memory plan
            return None, f"no tokenizer ({type(e).__name__}: {str(e).splitlines()[0][:80]})"
    lengths, hit = cached_sequence_lengths(path, tokenizer)
    who = str(getattr(tokenizer, "name_or_path", "tokenizer"))
    twin = " (a tiny twin's tokenizer: counts are approximate)" if "twins" in who else ""
    return lengths, f"{name} with {paths.rel(who) if '/' in who else who}{twin}" + (
        ", cached" if hit else "")
