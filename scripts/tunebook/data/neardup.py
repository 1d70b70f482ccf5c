"""Exact and near-duplicate detection over short SFT texts.

Why character 5-grams: prompts and replies are short, and word 5-grams miss obvious paraphrases
of short prompts ("What is the refund window…" vs "What's the refund window…" is 0.40 on
word-5 but 0.76 on char-5).

Why our own signatures: datasketch's ``MinHash.update``/``update_batch`` hash every shingle in
Python (SHA-1) and apply 128 permutations per shingle, O(shingles x perms) per row. Here every
shingle of every row is hashed once in numpy (a rolling polynomial hash mixed by splitmix64),
and the signature is *one-permutation hashing* (Li, Owen & Zhang 2012): the top 7 bits of a
shingle's hash pick one of 128 bins, the rest is its value, the bin keeps the minimum, and
empty bins are filled by rotation densification (Shrivastava & Li 2014).

Why our own banding: the LSH is datasketch's -- the same (bands, rows) that
``datasketch.MinHashLSH`` picks for the threshold (``_optimal_param``, false positives and
negatives weighted equally) and the same rule (two rows are candidates when one band of their
signatures is identical; ``tests/data/test_data_neardup.py`` checks the candidates equal
``MinHashLSH``'s) -- but computed for all rows at once with numpy sorts instead of one Python
``insert``/``query`` per row, which alone cost ~10 s on 100k rows.

Every candidate pair is then confirmed with the *exact* Jaccard of the two shingle sets, so
the reported clusters and leaks never rest on an estimate. The data checks keep only the band
keys per row and re-read the texts of candidate pairs (``pair_jaccards``), in blocks.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache

import numpy as np

NUM_PERM = 128  # signature length: bins of the one-permutation hash
SHINGLE = 5  # characters per shingle
_BIN_BITS = 7  # 2**7 == NUM_PERM
_VALUE_BITS = 64 - _BIN_BITS
_EMPTY = np.uint64(np.iinfo(np.uint64).max)


def normalise(text: str) -> str:
    """NFKC, lower case, whitespace collapsed: what "the same text" means for duplicates.
    (ASCII text is its own NFKC form: the normalisation is skipped for it.)"""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    return " ".join(text.lower().split())


def exact_key(text: str) -> str:
    return hashlib.sha1(normalise(text).encode("utf-8")).hexdigest()


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A strong 64-bit mixer (Steele et al.), vectorised; wrapping arithmetic is intended."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def shingle_hashes(texts: Sequence[str], *, normalised: bool = False
                   ) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of every character 5-gram of every (normalised) text; ``normalised``:
    the texts already went through ``normalise``.

    Returns ``(hashes, offsets)``: the shingles of text ``i`` are ``hashes[offsets[i]:
    offsets[i+1]]``. A text shorter than 5 characters is padded so it still has one shingle.
    Works in chunks of rows so memory stays bounded on large files.
    """
    norm = [(t if normalised else normalise(t)).ljust(SHINGLE) for t in texts]
    lengths = np.fromiter((len(t) for t in norm), dtype=np.int64, count=len(norm))
    n_sh = lengths - SHINGLE + 1
    offsets = np.concatenate(([0], np.cumsum(n_sh))).astype(np.int64)
    out = np.empty(int(offsets[-1]), dtype=np.uint64)
    start = 0
    while start < len(norm):
        # ~4M characters per chunk: a few tens of MB of temporaries.
        stop, chars = start, 0
        while stop < len(norm) and (chars < 4_000_000 or stop == start):
            chars += int(lengths[stop])
            stop += 1
        out[offsets[start] : offsets[stop]] = _chunk_hashes(norm[start:stop],
                                                            lengths[start:stop])
        start = stop
    return out, offsets


def _chunk_hashes(norm: list[str], lengths: np.ndarray) -> np.ndarray:
    codes = np.frombuffer("".join(norm).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    m = len(codes) - SHINGLE + 1
    h = codes[:m].copy()
    with np.errstate(over="ignore"):
        for j in range(1, SHINGLE):
            h *= np.uint64(0x100000001B3)
            h += codes[j : j + m]
    # Windows that cross into the next text are not shingles: the last SHINGLE-1 start
    # positions of every text (each text has at least SHINGLE characters).
    keep = np.ones(m, dtype=bool)
    ends = np.cumsum(lengths)
    cross = (ends[:-1, None] - np.arange(1, SHINGLE)[None, :]).ravel()
    keep[cross] = False
    return _splitmix64(h[keep])


def signatures(hashes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """One-permutation MinHash signatures, shape ``(rows, NUM_PERM)``, densified.

    Computed in blocks of rows so the temporaries stay small (fresh multi-GB arrays cost
    seconds in page faults alone on a 100k-row file).
    """
    rows = len(offsets) - 1
    sig = np.full((rows, NUM_PERM), _EMPTY, dtype=np.uint64)
    start = 0
    while start < rows:
        stop = int(np.searchsorted(offsets, offsets[start] + 2_000_000, side="right"))
        stop = min(rows, max(stop - 1, start + 1))
        a, b = int(offsets[start]), int(offsets[stop])
        block = hashes[a:b]
        row_of = np.repeat(np.arange(stop - start, dtype=np.int64),
                           np.diff(offsets[start : stop + 1]))
        flat = sig[start:stop].reshape(-1)
        idx = row_of * NUM_PERM + (block >> np.uint64(_VALUE_BITS)).astype(np.int64)
        np.minimum.at(flat, idx, block & np.uint64((1 << _VALUE_BITS) - 1))
        sig[start:stop] = _densify(flat.reshape(stop - start, NUM_PERM))
        start = stop
    return sig


def _densify(sig: np.ndarray) -> np.ndarray:
    """Rotation densification: an empty bin takes the next non-empty bin to its right
    (circularly) plus distance * C, with C above every real value so the two never mix."""
    empty = sig == _EMPTY
    if not empty.any():
        return sig
    doubled = np.concatenate([sig, sig], axis=1)
    cols = np.arange(2 * NUM_PERM)
    idx = np.where(doubled != _EMPTY, cols, 2 * NUM_PERM)
    nxt = np.minimum.accumulate(idx[:, ::-1], axis=1)[:, ::-1][:, :NUM_PERM]
    dist = (nxt - cols[:NUM_PERM]).astype(np.uint64)
    src = np.take_along_axis(doubled, np.minimum(nxt, 2 * NUM_PERM - 1), axis=1)
    with np.errstate(over="ignore"):
        filled = src + dist * np.uint64(1 << _VALUE_BITS)
    return np.where(empty, filled, sig)


def exact_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    return _jaccard(np.unique(a), np.unique(b))


def _jaccard(sa: np.ndarray, sb: np.ndarray) -> float:
    inter = np.intersect1d(sa, sb, assume_unique=True).size
    union = sa.size + sb.size - inter
    return inter / union if union else 1.0


PAIR_BLOCK = 20_000  # candidate pairs confirmed at a time (their texts are re-read per block)


def pair_jaccards(pairs: np.ndarray, texts_a: Callable[[list[int]], list[str]],
                  texts_b: Callable[[list[int]], list[str]] | None = None) -> list[float]:
    """The exact Jaccard of every pair ``(i, j)``, the texts fetched per block of pairs by
    ``texts_a(ids)`` (and ``texts_b`` for the ``j`` side when the pairs span two files; ids
    ascending). Memory: one block's shingle sets."""
    out: list[float] = []
    for start in range(0, len(pairs), PAIR_BLOCK):
        part = pairs[start : start + PAIR_BLOCK]
        if texts_b is None:
            sets_a = sets_b = _sets(np.unique(part), texts_a)
        else:
            sets_a, sets_b = _sets(np.unique(part[:, 0]), texts_a), \
                _sets(np.unique(part[:, 1]), texts_b)
        out += [_jaccard(sets_a[i], sets_b[j]) for i, j in part.tolist()]
    return out


def _sets(ids: np.ndarray, texts: Callable[[list[int]], list[str]]) -> dict[int, np.ndarray]:
    ids_list = ids.tolist()
    hashes, offsets = shingle_hashes(texts(ids_list))
    return {i: np.unique(hashes[offsets[k] : offsets[k + 1]]) for k, i in enumerate(ids_list)}


@dataclass
class Index:
    """Shingles and signatures of a list of texts, ready to query for near-duplicates."""

    hashes: np.ndarray
    offsets: np.ndarray
    sig: np.ndarray
    _keys: dict = field(default_factory=dict, repr=False)

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

    def keys(self, threshold: float) -> np.ndarray:
        """Band keys for the threshold's (bands, rows), computed once per threshold."""
        cached = self._keys.get(threshold)
        if cached is None:
            cached = self._keys[threshold] = band_keys(self.sig, threshold)
        return cached


@cache
def bands(threshold: float) -> tuple[int, int]:
    """(bands, rows per band) that datasketch's MinHashLSH uses for this threshold."""
    from datasketch.lsh import _optimal_param

    return _optimal_param(threshold, NUM_PERM, 0.5, 0.5)


_BAND_MIX = _splitmix64(np.arange(1, NUM_PERM + 1, dtype=np.uint64)) | np.uint64(1)


def band_keys(sig: np.ndarray, threshold: float) -> np.ndarray:
    """One 64-bit key per row and band: equal bands give equal keys (unequal ones collide
    with probability ~2^-64, and a collision only adds a candidate that Jaccard rejects)."""
    b, r = bands(threshold)
    out = np.empty((sig.shape[0], b), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(b):
            cols = sig[:, k * r : (k + 1) * r]
            out[:, k] = _splitmix64((cols * _BAND_MIX[k * r : (k + 1) * r]).sum(axis=1,
                                                                              dtype=np.uint64))
    return out


_MAX_BUCKET = 64  # a bigger bucket is chained (i, i+1) instead of all pairs


def candidate_pairs(keys: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Pairs (i, j), i < j, of ``rows`` that share a band key, shape (m, 2), unique."""
    found = []
    for k in range(keys.shape[1]):
        col = keys[rows, k]
        order = np.argsort(col, kind="stable")
        sorted_keys, sorted_rows = col[order], rows[order]
        same = sorted_keys[1:] == sorted_keys[:-1]
        if not same.any():
            continue
        # Runs of equal keys: starts where a run begins.
        starts = np.flatnonzero(np.concatenate(([True], ~same)))
        sizes = np.diff(np.concatenate((starts, [len(col)])))
        pairs = starts[sizes == 2]  # the common bucket: one pair, no per-bucket work
        a, b = sorted_rows[pairs], sorted_rows[pairs + 1]
        found.append(np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1))
        for start, size in zip(starts[sizes > 2], sizes[sizes > 2], strict=True):
            members = np.sort(sorted_rows[start : start + size])
            if size <= _MAX_BUCKET:
                a, b = np.triu_indices(size, 1)
                found.append(np.stack([members[a], members[b]], axis=1))
            else:
                found.append(np.stack([members[:-1], members[1:]], axis=1))
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(found), axis=0)


def cross_pairs(q_keys: np.ndarray, q_rows: np.ndarray, t_keys: np.ndarray) -> np.ndarray:
    """Pairs (query row, target row) that share a band key, unique."""
    found = []
    for k in range(q_keys.shape[1]):
        t_col = t_keys[:, k]
        order = np.argsort(t_col, kind="stable")
        t_sorted = t_col[order]
        q_col = q_keys[q_rows, k]
        lo = np.searchsorted(t_sorted, q_col, side="left")
        hi = np.searchsorted(t_sorted, q_col, side="right")
        hit = np.flatnonzero(hi > lo)
        for i in hit:
            targets = order[lo[i] : min(hi[i], lo[i] + _MAX_BUCKET)]
            found.append(np.stack([np.full(len(targets), q_rows[i]), targets], axis=1))
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(found), axis=0)


@dataclass
class Clusters:
    """Near-duplicate clusters of one file: ``root[i]`` is the first row of i's cluster."""

    root: list[int]
    pairs: list[tuple[int, int, float]] = field(default_factory=list)  # confirmed (i, j, jaccard)

    def duplicates(self) -> list[int]:
        """Rows in a cluster beyond its first member (what a cleaner would drop)."""
        return [i for i, r in enumerate(self.root) if r != i]


def clusters(index: Index, threshold: float, skip: set[int] | None = None) -> Clusters:
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
        rows = np.array([i for i in range(n) if not skip or i not in skip], dtype=np.int64)
        keys = index.keys(threshold)
        for i, j in candidate_pairs(keys, rows).tolist():
            jac = index.jaccard(i, index, j)
            if jac >= threshold:
                pairs.append((i, j, jac))
                ri, rj = find(i), find(j)
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
    root = [find(i) for i in range(n)]
    return Clusters(root=root, pairs=pairs)


def cross_matches(query: Index, target: Index, threshold: float,
                  rows: Sequence[int] | None = None) -> list[tuple[int, int, float]]:
    """(query row, target row, jaccard) for query rows that near-duplicate a target row,
    the most similar target row for each."""
    if len(query) == 0 or len(target) == 0:
        return []
    q_rows = np.arange(len(query)) if rows is None else np.asarray(rows, dtype=np.int64)
    best: dict[int, tuple[int, float]] = {}
    for i, j in cross_pairs(query.keys(threshold), q_rows, target.keys(threshold)).tolist():
        jac = query.jaccard(i, target, j)
        if jac >= threshold and (i not in best or jac > best[i][1]):
            best[i] = (j, jac)
    return [(i, j, jac) for i, (j, jac) in sorted(best.items())]
