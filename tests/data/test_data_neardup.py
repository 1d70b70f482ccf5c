"""Near-duplicate machinery: signatures estimate Jaccard, banding equals datasketch's MinHashLSH,
and clusters rest on exact Jaccard."""

from __future__ import annotations

import random

import numpy as np
from datasketch import LeanMinHash, MinHashLSH

from tunebook.data import neardup


def _texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(2, 8)))
             for _ in range(3000)]
    base = [" ".join(rng.choice(words) for _ in range(rng.randint(8, 60))) for _ in range(n)]
    # Plant near-copies at graded distances.
    for i in range(0, n, 10):
        t = base[i]
        cut = max(1, len(t) // rng.randint(5, 40))
        base.append(t[:-cut] + " " + "".join(rng.choice("xyz") for _ in range(cut)))
    return base


def test_signature_agreement_tracks_exact_jaccard():
    texts = _texts(200)
    index = neardup.Index.build(texts)
    errors = []
    for i in range(200, len(texts)):
        src = (i - 200) * 10
        est = float((index.sig[i] == index.sig[src]).mean())
        errors.append(abs(est - index.jaccard(i, index, src)))
    # 128 bins: standard error ~ sqrt(J(1-J)/128) <= 0.045.
    assert np.mean(errors) < 0.05 and max(errors) < 0.2


def test_banding_equals_datasketch_minhashlsh():
    texts = _texts(400, seed=1)
    index = neardup.Index.build(texts)
    for threshold in (0.7, 0.8, 0.9):
        lsh = MinHashLSH(threshold=threshold, num_perm=neardup.NUM_PERM)
        b, r = neardup.bands(threshold)
        assert (lsh.b, lsh.r) == (b, r)
        leans = []
        for i in range(len(texts)):
            lean = LeanMinHash.__new__(LeanMinHash)
            lean._initialize_slots(1, index.sig[i], "affine64")
            leans.append(lean)
            lsh.insert(i, lean)
        theirs = {(min(i, j), max(i, j)) for i in range(len(texts)) for j in lsh.query(leans[i])
                  if i != j}
        ours = {tuple(p) for p in neardup.candidate_pairs(
            index.keys(threshold), np.arange(len(texts))).tolist()}
        assert ours == theirs
        assert theirs  # the planted copies are found


def test_clusters_are_confirmed_by_exact_jaccard():
    texts = ["What is the refund window for annual plans?",
             "What's the refund window for annual plans?",
             "How do I pair my headphones with a laptop?",
             "abc", ""]
    index = neardup.Index.build(texts)
    found = neardup.clusters(index, 0.7)
    assert found.root == [0, 0, 2, 3, 4]
    assert found.duplicates() == [1]
    assert neardup.clusters(index, 0.8).duplicates() == []  # exact Jaccard is 0.75


def test_cross_matches_pick_the_most_similar_target():
    train = ["the quick brown fox jumps over the lazy dog today",
             "the quick brown fox jumps over the lazy dog now",
             "completely unrelated sentence about routers"]
    test = ["the quick brown fox jumps over the lazy dog today!", "nothing like it at all"]
    hits = neardup.cross_matches(neardup.Index.build(test), neardup.Index.build(train), 0.8)
    assert [(i, j) for i, j, _ in hits] == [(0, 0)]


def test_shingle_hashes_match_a_reference_implementation():
    texts = ["hello world", "abc", "", "The  Quick brown fox", "x" * 20, "ünïcödé ✓ text"]
    hashes, offsets = neardup.shingle_hashes(texts)
    ref = []
    for t in texts:
        t = neardup.normalise(t).ljust(neardup.SHINGLE)
        for k in range(len(t) - neardup.SHINGLE + 1):
            v = 0
            for ch in t[k : k + neardup.SHINGLE]:
                v = (v * 0x100000001B3 + ord(ch)) % 2**64
            ref.append(v)
    assert np.array_equal(neardup._splitmix64(np.array(ref, dtype=np.uint64)), hashes)
    assert offsets.tolist()[-1] == len(ref)
