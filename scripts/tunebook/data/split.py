"""Deterministic, leak-free train/val/test splits.

Rows are grouped first, then groups are assigned: a near-duplicate cluster (char-5 Jaccard above
the threshold, see ``neardup``) is one group, so near-copies can never sit on both sides of a
split (split by group before deduplicating). For classification the groups are split per label
(stratified), so every split keeps the label mix. The order inside a label is a SHA-256 of the
seed and the group's normalised text, not ``random``: the same file gives the same split on any
machine and Python version.

``split_file`` streams: the groups come from the data checks' per-row hashes and band keys
(``tunebook.data.checks``; near-duplicate pairs confirmed by re-reading the two rows), labels
and order keys from one more pass over the rows, and each split file from one pass that copies
its rows by byte offset. No row text is held in memory.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tunebook import paths
from tunebook.data import formats, neardup
from tunebook.data.check import engine, reader
from tunebook.errors import UserError

RATIOS = (0.8, 0.1, 0.1)
SPLITS = ("train", "val", "test")


def _order_key(seed: int, text: str) -> str:
    return hashlib.sha256(f"{seed}\0{neardup.normalise(text)}".encode()).hexdigest()


def _allocate(n: int, ratios: Sequence[float]) -> list[int]:
    """Split n items into counts by ratios (largest remainder), every split >= 1 when n >= 3."""
    if n <= 0:
        return [0] * len(ratios)
    raw = [n * r for r in ratios]
    counts = [int(x) for x in raw]
    for i in sorted(range(len(raw)), key=lambda k: raw[k] - counts[k], reverse=True):
        if sum(counts) >= n:
            break
        counts[i] += 1
    if n >= len(ratios):
        for i in range(1, len(counts)):
            if counts[i] == 0:
                counts[0] -= 1
                counts[i] = 1
    return counts


def allocate(root: np.ndarray, labels: Sequence[Any] | None, order_key: Callable[[int], str],
             ratios: Sequence[float] = RATIOS) -> np.ndarray:
    """The split index (0 train, 1 val, 2 test) of every row, given each row's group ``root``
    (the group's first row); a group's label is its first row's label, and ``order_key(root)``
    orders the groups of a label."""
    n = len(root)
    out = np.zeros(n, dtype=np.int8)
    if n == 0:
        return out
    sizes = np.bincount(root, minlength=n)
    reps = np.flatnonzero(sizes).tolist()  # ascending: the order groups first appear in
    by_label: dict[Any, list[int]] = defaultdict(list)
    for r in reps:
        by_label[labels[r] if labels is not None else None].append(r)
    split_of = np.zeros(n, dtype=np.int8)
    done = 0  # rows of the labels already allocated
    for label in sorted(by_label, key=lambda x: "" if x is None else str(x)):
        group_reps = sorted(by_label[label], key=order_key)
        # Allocate by rows, not groups: walk the groups and fill each split up to its quota.
        total = int(sum(sizes[r] for r in group_reps))
        # Cumulative rounding: the quotas of the labels so far add up to the quotas of all
        # their rows, so per-label rounding never piles up in one split.
        before, after = _allocate(done, ratios), _allocate(done + total, ratios)
        quota = [a - b for a, b in zip(after, before, strict=True)]
        if min(quota) < 0:
            quota = _allocate(total, ratios)
        done += total
        # Fill the smaller splits first so a big cluster lands in train, not val/test.
        order = [1, 2, 0]
        filled = [0, 0, 0]
        k = 0
        for r in group_reps:
            size = int(sizes[r])
            while k < len(order) - 1 and filled[order[k]] + size > quota[order[k]]:
                k += 1
            split = order[k]
            filled[split] += size
            split_of[r] = split
    out[:] = split_of[root]
    return out


def assign(
    texts: Sequence[str],
    labels: Sequence[str | None] | None = None,
    *,
    seed: int = 0,
    threshold: float = 0.8,
    ratios: Sequence[float] = RATIOS,
) -> list[int]:
    """The split index (0 train, 1 val, 2 test) of every row of in-memory ``texts``.

    Whole near-duplicate clusters move together; a cluster's label is its first row's label.
    """
    n = len(texts)
    if n == 0:
        return []
    index = neardup.Index.build(texts)
    exact: dict[str, int] = {}
    root = list(range(n))
    for i, t in enumerate(texts):
        root[i] = exact.setdefault(neardup.exact_key(t), i)
    near = neardup.clusters(index, threshold, skip={i for i in range(n) if root[i] != i})
    groups = np.array([near.root[r] for r in root], dtype=np.int64)
    return allocate(groups, labels, lambda r: _order_key(seed, texts[r]), ratios).tolist()


def split_rows(
    rows: Sequence[dict],
    text_of: Callable[[dict], str],
    label_of: Callable[[dict], str | None] | None = None,
    *,
    seed: int = 0,
    threshold: float = 0.8,
) -> dict[str, list[dict]]:
    """``{"train": [...], "val": [...], "test": [...]}``, each in the input order."""
    texts = [text_of(r) for r in rows]
    labels = [label_of(r) for r in rows] if label_of else None
    where = assign(texts, labels, seed=seed, threshold=threshold)
    out: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for row, k in zip(rows, where, strict=True):
        out[SPLITS[k]].append(row)
    return out


@dataclass
class SplitFiles:
    """What ``split_file`` wrote: one entry per split, and a digest of all of them."""

    # (path, rows, rows per label)
    files: list[tuple[Path, int, dict[str, int]]] = field(default_factory=list)
    digest: str = ""


def split_file(src: Path, out: Path, config: dict | None = None, *,
               label_field: str | None = None, seed: int = 0) -> SplitFiles:
    """Write ``out/{train,val,test}.jsonl`` from ``src``: stratified by ``label_field`` (or by
    the final assistant message when the recipe ``config`` has ``data.labels``), near-duplicate
    clusters kept together. Malformed input is refused (``UserError``); ``src`` is never touched.
    """
    threshold = engine.thresholds(config).near_duplicate_threshold
    report, [work] = engine.run(
        [("data", src)], {"data": {"checks": {"near_duplicate_threshold": threshold}}}, None,
        None)
    bad = report.malformed()
    if bad:
        shown = "\n".join(str(p) for p in bad[: report.checks.max_errors_per_code])
        raise UserError(f"{shown}\n{paths.rel(src)}: {len(bad)} malformed rows; fix them first "
                        "(`tunebook data-check --data ... --fix clean.jsonl`)")
    rows = work.report.rows
    exact_first = work.columns["exact_first"]
    near_root = work.columns["near_root"]
    root = np.array([near_root.get(e, e) for e in exact_first.tolist()], dtype=np.int64)
    labels = ((config or {}).get("data") or {}).get("labels")
    stratify = bool(label_field or labels)
    names: dict[str, int] = {}
    codes = np.zeros(len(root), dtype=np.int64)
    keys: dict[int, str] = {}
    missing: list[int] = []
    valid = work.valid_rows()
    for i, raw in enumerate(rows.raw_bytes(valid.tolist())):
        obj = reader.parse(raw.decode("utf-8"))
        if label_field:
            if not isinstance(obj, dict) or label_field not in obj:
                missing.append(int(rows.line[valid[i]]))
                continue
            codes[i] = names.setdefault(str(obj[label_field]), len(names))
        elif labels:
            codes[i] = names.setdefault((formats.answer(obj) or "").strip(), len(names))
        if root[i] == i:
            keys[i] = _order_key(seed, formats.row_text(obj))
    if missing:
        raise UserError(f"{paths.rel(src)}:{missing[0]}: no {label_field!r} key "
                        f"(--label-field); {len(missing)} rows lack it")
    if out.resolve() == src.resolve().parent and src.stem in SPLITS:
        raise UserError(f"--out {out}: would overwrite {paths.rel(src)}; choose another folder")
    label_names = list(names)
    where = allocate(root, [label_names[c] for c in codes.tolist()] if stratify else None,
                     keys.__getitem__)
    out.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    result = SplitFiles()
    for k, name in enumerate(SPLITS):
        mine = np.flatnonzero(where == k)
        with (out / f"{name}.jsonl").open("wb") as f:
            for raw in rows.raw_bytes(valid[mine].tolist()):
                f.write(raw + b"\n")
                digest.update(raw + b"\n")
        counts = (dict(sorted(Counter(label_names[c] for c in codes[mine].tolist()).items()))
                  if stratify else {})
        result.files.append((out / f"{name}.jsonl", len(mine), counts))
    result.digest = digest.hexdigest()[:16]
    return result
