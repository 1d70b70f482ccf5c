"""Deterministic, leak-free train/val/test splits.

Rows are grouped first, then groups are assigned: a near-duplicate cluster (char-5 Jaccard above
the threshold, see ``neardup``) is one group, so near-copies can never sit on both sides of a
split (split by group before deduplicating). For classification the groups are
split per label (stratified), so every split keeps the label mix. The order inside a label is a
SHA-256 of the seed and the group's normalised text, not ``random``: the same file gives the
same split on any machine and Python version.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunebook import paths
from tunebook.data import formats, gate, neardup
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


def assign(
    texts: Sequence[str],
    labels: Sequence[str | None] | None = None,
    *,
    seed: int = 0,
    threshold: float = 0.8,
    ratios: Sequence[float] = RATIOS,
) -> list[int]:
    """The split index (0 train, 1 val, 2 test) of every row.

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
    for i in range(n):
        r = root[i]
        root[i] = near.root[r]
    groups: dict[int, list[int]] = defaultdict(list)
    for i, r in enumerate(root):
        groups[r].append(i)
    by_label: dict[Any, list[int]] = defaultdict(list)
    for r in groups:
        by_label[labels[r] if labels is not None else None].append(r)
    out = [0] * n
    done = 0  # rows of the labels already allocated
    for label in sorted(by_label, key=lambda x: "" if x is None else str(x)):
        reps = sorted(by_label[label], key=lambda r: _order_key(seed, texts[r]))
        # Allocate by rows, not groups: walk the groups and fill each split up to its quota.
        total = sum(len(groups[r]) for r in reps)
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
        for r in reps:
            size = len(groups[r])
            while k < len(order) - 1 and filled[order[k]] + size > quota[order[k]]:
                k += 1
            split = order[k]
            filled[split] += size
            for i in groups[r]:
                out[i] = split
    return out


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
    report = gate.check_path(src, None)
    bad = report.malformed()
    if bad:
        shown = "\n".join(str(p) for p in bad[: report.checks.max_errors_per_code])
        raise UserError(f"{shown}\n{paths.rel(src)}: {len(bad)} malformed rows; fix them first "
                        "(`tunebook data-check --data ... --fix clean.jsonl`)")
    rows = report.files[0].rows
    labels = ((config or {}).get("data") or {}).get("labels")
    threshold = gate.Checks.from_config(config).near_duplicate_threshold
    label_of: Callable[[Any], str] | None = None
    if label_field:
        missing = [r.line for r in rows if not isinstance(r.obj, dict) or label_field not in r.obj]
        if missing:
            raise UserError(f"{paths.rel(src)}:{missing[0]}: no {label_field!r} key "
                            f"(--label-field); {len(missing)} rows lack it")
        label_of = lambda r: str(r.obj[label_field])  # noqa: E731
    elif labels:
        label_of = lambda r: (formats.answer(r.obj) or "").strip()  # noqa: E731
    if out.resolve() == src.resolve().parent and src.stem in SPLITS:
        raise UserError(f"--out {out}: would overwrite {paths.rel(src)}; choose another folder")
    where = assign([formats.row_text(r.obj) for r in rows],
                   [label_of(r) for r in rows] if label_of else None,
                   seed=seed, threshold=threshold)
    out.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    result = SplitFiles()
    for k, name in enumerate(SPLITS):
        part = [r for r, w in zip(rows, where, strict=True) if w == k]
        text = "".join(r.raw + "\n" for r in part)
        (out / f"{name}.jsonl").write_text(text, encoding="utf-8")
        digest.update(text.encode())
        counts = dict(sorted(Counter(label_of(r) for r in part).items())) if label_of else {}
        result.files.append((out / f"{name}.jsonl", len(part), counts))
    result.digest = digest.hexdigest()[:16]
    return result
