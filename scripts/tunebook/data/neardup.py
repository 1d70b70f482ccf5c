"""Exact and near-duplicate detection over short SFT texts.

Why character 5-grams: prompts and replies are short, and word 5-grams miss obvious paraphrases
of short prompts (shared/reference/reliability.md 4.1: "What is the refund window…" vs
"What's the refund window…" is 0.40 on word-5 but 0.76 on char-5).

Why our own signatures: datasketch's ``MinHash.update``/``update_batch`` hash every shingle in
Python (SHA-1) and apply 128 permutations per shingle, O(shingles x perms) per row. Here every
shingle of every row is hashed once in numpy (a rolling polynomial hash mixed by splitmix64),
and the signature is *one-permutation hashing* (Li, Owen & Zhang 2012): the top 7 bits of a
shingle's hash pick one of 128 bins, the rest is its value, the bin keeps the minimum, and
empty bins are filled by rotation densification (Shrivastava & Li 2014). The signatures are
then indexed with datasketch's ``MinHashLSH`` (its own optimal bands/rows for the threshold)
through ``LeanMinHash`` objects and an insertion session. Every candidate pair LSH returns is
confirmed with the *exact* Jaccard of the two shingle sets, so the reported clusters never rest
on an estimate.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

NUM_PERM = 128  # signature length: bins of the one-permutation hash
SHINGLE = 5  # characters per shingle
_BIN_BITS = 7  # 2**7 == NUM_PERM
_VALUE_BITS = 64 - _BIN_BITS
_EMPTY = np.uint64(np.iinfo(np.uint64).max)
_SEED = 1  # LeanMinHash needs a seed; ours are not datasketch's permutations, so any fixed one


def normalise(text: str) -> str:
    """NFKC, lower case, whitespace collapsed: what "the same text" means for duplicates."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def exact_key(text: str) -> str:
    return hashlib.sha1(normalise(text).encode("utf-8")).hexdigest()


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A strong 64-bit mixer (Steele et al.), vectorised; wrapping arithmetic is intended."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def shingle_hashes(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of every character 5-gram of every (normalised) text.

    Returns ``(hashes, offsets)``: the shingles of text ``i`` are ``hashes[offsets[i]:
    offsets[i+1]]``. A text shorter than 5 characters is padded so it still has one shingle.
    """
    norm = [normalise(t).ljust(SHINGLE) for t in texts]
    lengths = np.fromiter((len(t) for t in norm), dtype=np.int64, count=len(norm))
    codes = np.frombuffer("".join(norm).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    starts = np.concatenate(([0], np.cumsum(lengths)))
    n_sh = lengths - SHINGLE + 1
    offsets = np.concatenate(([0], np.cumsum(n_sh)))
    total = int(offsets[-1])
    if total == 0:
        return np.zeros(0, dtype=np.uint64), offsets
    # Position of each shingle in `codes`: row start + index within the row.
    row_of = np.repeat(np.arange(len(norm)), n_sh)
    pos = starts[row_of] + (np.arange(total) - offsets[row_of])
    h = np.zeros(total, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(SHINGLE):
            h = h * np.uint64(0x100000001B3) + codes[pos + j]
    return _splitmix64(h), offsets


def signatures(hashes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """One-permutation MinHash signatures, shape ``(rows, NUM_PERM)``, densified."""
    rows = len(offsets) - 1
    sig = np.full(rows * NUM_PERM, _EMPTY, dtype=np.uint64)
    if rows == 0:
        return sig.reshape(0, NUM_PERM)
    n_sh = np.diff(offsets)
    row_of = np.repeat(np.arange(rows, dtype=np.int64), n_sh)
    bins = (hashes >> np.uint64(_VALUE_BITS)).astype(np.int64)
    values = hashes & np.uint64((1 << _VALUE_BITS) - 1)
    np.minimum.at(sig, row_of * NUM_PERM + bins, values)
    sig = sig.reshape(rows, NUM_PERM)
    empty = sig == _EMPTY
    if empty.any():
        # Rotation densification: an empty bin takes the next non-empty bin to its right
        # (circularly) plus distance * C, with C above every real value so the two never mix.
        doubled = np.concatenate([sig, sig], axis=1)
        cols = np.arange(2 * NUM_PERM)
        idx = np.where(doubled != _EMPTY, cols, 2 * NUM_PERM)
        nxt = np.minimum.accumulate(idx[:, ::-1], axis=1)[:, ::-1][:, :NUM_PERM]
        dist = (nxt - cols[:NUM_PERM]).astype(np.uint64)
        src = np.take_along_axis(doubled, np.minimum(nxt, 2 * NUM_PERM - 1), axis=1)
        with np.errstate(over="ignore"):
            filled = src + dist * np.uint64(1 << _VALUE_BITS)
        sig = np.where(empty, filled, sig)
    return sig


def exact_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    sa, sb = np.unique(a), np.unique(b)
    inter = np.intersect1d(sa, sb, assume_unique=True).size
    union = sa.size + sb.size - inter
    return inter / union if union else 1.0


@dataclass
class Index:
    """Shingles and signatures of a list of texts, ready to query for near-duplicates."""

    hashes: np.ndarray
    offsets: np.ndarray
    sig: np.ndarray

    @classmethod
    def build(cls, texts: Sequence[str]) -> Index:
        hashes, offsets = shingle_hashes(texts)
        return cls(hashes, offsets, signatures(hashes, offsets))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def shingles(self, i: int) -> np.ndarray:
        return self.hashes[self.offsets[i] : self.offsets[i + 1]]

    def jaccard(self, i: int, other: Index, j: int) -> float:
        return exact_jaccard(self.shingles(i), other.shingles(j))


class LSH:
    """datasketch's ``MinHashLSH`` over some rows of an ``Index`` (bands/rows chosen by
    datasketch for the threshold), filled in one insertion session."""

    def __init__(self, index: Index, threshold: float, rows: Sequence[int] | None = None):
        from datasketch import MinHashLSH

        self.index = index
        self.threshold = threshold
        self.lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
        self.leans = {}
        with self.lsh.insertion_session() as session:
            for i in range(len(index)) if rows is None else rows:
                lean = self.leans[i] = _lean(index.sig[i])
                session.insert(i, lean, check_duplication=False)

    def candidates(self, sig_row: np.ndarray) -> list[int]:
        return self.lsh.query(_lean(sig_row))


def _lean(sig_row: np.ndarray):
    from datasketch import LeanMinHash

    lean = LeanMinHash.__new__(LeanMinHash)
    lean._initialize_slots(_SEED, sig_row, "affine64")
    return lean


@dataclass
class Clusters:
    """Near-duplicate clusters of one file: ``root[i]`` is the first row of i's cluster."""

    root: list[int]
    pairs: list[tuple[int, int, float]] = field(default_factory=list)  # confirmed (i, j, jaccard)

    def duplicates(self) -> list[int]:
        """Rows in a cluster beyond its first member (what a cleaner would drop)."""
        return [i for i, r in enumerate(self.root) if r != i]


def clusters(index: Index, threshold: float, skip: set[int] | None = None,
             lsh: LSH | None = None) -> Clusters:
    """Group rows whose exact char-5 Jaccard is >= threshold (LSH candidates, then confirmed).

    ``skip`` rows (e.g. exact duplicates, already reported) are left out of the search.
    """
    n = len(index)
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    pairs: list[tuple[int, int, float]] = []
    if n > 1:
        keep = [i for i in range(n) if not skip or i not in skip]
        lsh = lsh or LSH(index, threshold, keep)
        keep_set = set(keep)
        for i in keep:
            for j in lsh.lsh.query(lsh.leans[i]):
                if j <= i or j not in keep_set:
                    continue
                jac = index.jaccard(i, index, j)
                if jac >= threshold:
                    pairs.append((i, j, jac))
                    ri, rj = find(i), find(j)
                    if ri != rj:
                        parent[max(ri, rj)] = min(ri, rj)
    root = [find(i) for i in range(n)]
    return Clusters(root=root, pairs=pairs)


def cross_matches(query: Index, target: Index | LSH, threshold: float,
                  rows: Sequence[int] | None = None) -> list[tuple[int, int, float]]:
    """(query row, target row, jaccard) for query rows that near-duplicate a target row,
    the most similar target row for each."""
    lsh = target if isinstance(target, LSH) else LSH(target, threshold)
    out: list[tuple[int, int, float]] = []
    for i in range(len(query)) if rows is None else rows:
        best: tuple[int, float] | None = None
        for j in lsh.candidates(query.sig[i]):
            jac = query.jaccard(i, lsh.index, j)
            if jac >= threshold and (best is None or jac > best[1]):
                best = (j, jac)
        if best is not None:
            out.append((i, best[0], best[1]))
    return out
