"""Too long: rows Axolotl would drop because they exceed ``axolotl.sequence_len`` tokens
(counted with the recipe's tokenizer, chat template applied: ``tunebook.data.tokens``), and rows
over ``reader.MAX_ROW_BYTES`` bytes, which the reader refuses to parse.

Token lengths are a second pass over the valid rows, once their number is known, in batches of
``BATCH`` rows (rendered, then counted by the Rust tokenizer's batch call; only the counts are
kept, never the token ids). Up to ``EXACT_LENGTH_ROWS`` valid rows, every row is counted. Above
that, only the rows that *could* exceed ``seq_len`` -- a token is at least one UTF-8 byte for
byte-level BPE and SentencePiece tokenizers (plus one for SentencePiece's leading space), so a
rendered row of at most ``seq_len - 4`` bytes cannot be too long -- and an evenly spaced sample
for the percentiles. The too-long verdict is exact either way; only the percentiles are sampled.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tunebook.data import formats, tokens
from tunebook.data.check import pool, reader
from tunebook.data.check.base import GATED, Check

EXACT_LENGTH_ROWS = 20_000  # up to this many rows every row is tokenized
LENGTH_SAMPLE = 2_000  # rows tokenized for the percentiles of a bigger file
BATCH = 4_096  # rows rendered and counted at a time
_BYTE_SLACK = 4  # tokens <= UTF-8 bytes + 1 for byte-level BPE and SentencePiece; margin

_TOKENIZER: Any = None  # a worker's tokenizer, set once by its initializer


def _set_tokenizer(tokenizer: Any) -> None:
    global _TOKENIZER
    _TOKENIZER = tokenizer


def count_batch(tokenizer: Any, raws: list[bytes], first: int, seq_len: int, every: bool,
                step: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Token counts of the rows of one batch that need counting: ``(valid ids, counts,
    rows rendered with the system message merged)``; ``first`` is the batch's first valid id."""
    convs = [formats.messages(reader.parse(raw.decode("utf-8"))) for raw in raws]
    return _count(tokenizer, convs, first, seq_len, every, step)


def _count(tokenizer: Any, convs: list[list[dict]], first: int, seq_len: int | None,
           every: bool, step: int) -> tuple[np.ndarray, np.ndarray, int]:
    texts, merged = tokens.render_texts(tokenizer, convs)
    if every or not seq_len:
        picked = list(range(len(texts)))
    else:
        picked = [k for k, t in enumerate(texts)
                  if (first + k) % step == 0 or len(t) * 4 + _BYTE_SLACK > seq_len
                  and len(t.encode("utf-8")) + _BYTE_SLACK > seq_len]
    counts = tokens.count(tokenizer, [texts[k] for k in picked]) if picked else []
    return (np.asarray(picked, dtype=np.int64) + first, np.asarray(counts, dtype=np.int64),
            merged)


def token_lengths(tokenizer: Any, rows: list[Any], seq_len: int | None = None
                  ) -> tuple[dict[int, int], int]:
    """Tokens per row of in-memory ``rows`` as Axolotl counts them (chat template applied):
    ``({row index: n}, rows rendered with the system message merged)`` -- every row up to
    ``EXACT_LENGTH_ROWS`` (or without ``seq_len``), else the rows that could exceed
    ``seq_len`` and the percentile sample, as the check counts a file."""
    n = len(rows)
    every, step = n <= EXACT_LENGTH_ROWS or not seq_len, max(1, n // LENGTH_SAMPLE)
    out: dict[int, int] = {}
    merged = 0
    for first in range(0, n, BATCH):
        convs = [formats.messages(r) for r in rows[first : first + BATCH]]
        ids, counts, m = _count(tokenizer, convs, first, seq_len, every, step)
        out.update(zip(ids.tolist(), counts.tolist(), strict=True))
        merged += m
    return out, merged


def _count_task(task: tuple) -> tuple[np.ndarray, np.ndarray, int]:
    return count_batch(_TOKENIZER, *task)


class TooLong(Check):
    name = "too_long"
    codes = ("too-long",)
    severity = GATED
    threshold = "max_too_long"
    reports = "rows longer than axolotl.sequence_len tokens (with the recipe's tokenizer), or " \
              "over 1 MiB"

    def second_pass(self, work: Any, ctx: Any, pools: Any) -> bool:
        seq_len, tokenizer = ctx.seq_len, ctx.tokenizer
        if tokenizer is None or not seq_len:
            return False
        valid = work.valid_rows()
        n = len(valid)
        if not n:
            return True
        every = n <= EXACT_LENGTH_ROWS
        step = max(1, n // LENGTH_SAMPLE)
        ids, counts, merged = [], [], 0
        for got, c, m in _batches(work, valid, tokenizer, seq_len, every, step, pools):
            ids.append(got)
            counts.append(c)
            merged += m
        got_ids, got_counts = np.concatenate(ids), np.concatenate(counts)
        rep = work.report
        if merged:
            rep.notes.append(f"{merged} rows rendered with the system message merged into the "
                             "first user turn (the chat template rejects a system role)")
        ordered = np.sort(got_counts if every else got_counts[got_ids % step == 0]).tolist()
        rep.tokens = {"p50": ordered[len(ordered) // 2],
                      "p95": ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))],
                      "max": int(got_counts.max()), "counted": len(got_ids),
                      "sampled_percentiles": not every}
        lines = work.valid_lines()
        for k, tok in zip(got_ids.tolist(), got_counts.tolist(), strict=True):
            if tok > seq_len:
                line = int(lines[k])
                rep.details[self.name].append({"line": line, "tokens": tok})
                rep.add(line, "too-long", f"{tok} tokens > axolotl.sequence_len {seq_len}; "
                        "Axolotl drops it (excess_length_strategy: drop)")
        return True


def _batches(work: Any, valid: np.ndarray, tokenizer: Any, seq_len: int, every: bool,
             step: int, pools: Any):
    def tasks():
        raws = work.report.rows.raw_bytes(valid.tolist())
        for first in range(0, len(valid), BATCH):
            batch = [next(raws) for _ in range(min(BATCH, len(valid) - first))]
            yield batch, first, seq_len, every, step

    if work.size < pool.POOL_MIN_BYTES or pool.workers() < 2:
        yield from (count_batch(tokenizer, *t) for t in tasks())
        return
    counters = pool.make_pool(_set_tokenizer, (tokenizer,))
    try:
        yield from pool.ordered_map(counters, _count_task, tasks())
    finally:
        if counters is not None:
            counters.shutdown()
