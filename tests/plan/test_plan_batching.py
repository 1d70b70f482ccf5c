"""Packing and padding arithmetic (tunebook.plan.batching) on small hand-made length lists.

Every expected number is worked out by hand in the comment beside it. The first-fit packer is
also checked bin for bin against Axolotl's own ``pack_group`` (the installed Axolotl, not a copy).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import replace

import pytest

from tunebook.plan.batching import (
    BatchingSettings,
    batch,
    expected_batch_max,
    fit_lengths,
    pack_first_fit,
)

# four rows that fit a 1,024-token sequence_len and one that does not
LENGTHS = [100, 200, 300, 400, 1100]


def settings(**over) -> BatchingSettings:
    ax = {"sequence_len": 1024, "micro_batch_size": 2, "gradient_accumulation_steps": 1}
    ax.update(over.pop("ax", {}))
    return BatchingSettings.from_axolotl(ax, over.pop("attn", "flash_attention_2"),
                                         over.pop("gpus", 1))


def test_rows_longer_than_sequence_len_are_dropped_or_cut():
    assert fit_lengths(LENGTHS, 1024, "drop") == ([100, 200, 300, 400], 1)
    assert fit_lengths([1024, 1025], 1024, "drop") == ([1024], 1)  # exactly sequence_len stays
    assert fit_lengths(LENGTHS, 1024, "truncate") == ([100, 200, 300, 400, 1024], 0)


def test_unpacked_random_batches_pad_to_the_longest_row_rounded_to_64():
    b = batch(LENGTHS, settings())
    # kept 100, 200, 300, 400 -> widths rounded up to 64: 128, 256, 320, 448. Two random rows of
    # four: C(4, 2) = 6 pairs; the largest is 256 in 1 pair, 320 in 2, 448 in 3:
    # E[max] = (256 + 2 * 320 + 3 * 448) / 6 = 2240 / 6; every row pads to its batch's max
    assert not b.packed and b.sequences == 4 and b.dropped == 1
    assert b.useful_tokens == 1000
    assert b.processed_tokens == pytest.approx(4 * 2240 / 6)  # 1493.3
    assert b.efficiency == pytest.approx(1000 / (4 * 2240 / 6))  # 0.670
    assert b.micro_batches == 2 and b.steps == 2  # ceil(4 / 2) micro-batches, accumulation 1
    assert "random micro-batches of 2" in b.how and "group_by_length off" in b.how


def test_unpacked_pad_to_sequence_len_and_exact_padding():
    # pad_to_sequence_len: true pads every row to 1024 (already a multiple of 64)
    assert batch(LENGTHS, settings(ax={"pad_to_sequence_len": True})).processed_tokens == 4 * 1024
    # false: exactly the longest row: (200 + 2 * 300 + 3 * 400) / 6 per row
    exact = batch(LENGTHS, settings(ax={"pad_to_sequence_len": False}))
    assert exact.processed_tokens == pytest.approx(4 * 2000 / 6)
    # one row per micro-batch: only the rounding to 64 is padding: 128 + 256 + 320 + 448
    one = batch(LENGTHS, settings(ax={"micro_batch_size": 1}))
    assert one.processed_tokens == pytest.approx(1152) and one.micro_batches == 4


def test_group_by_length_sorts_within_mega_batches():
    b = batch(LENGTHS, settings(ax={"group_by_length": True}))
    # one mega-batch (50 x 2 rows > 4) sorted longest first: [400, 300] and [200, 100];
    # widths 448 and 256, two rows each: 2 * 448 + 2 * 256
    assert b.processed_tokens == 1408


def test_packed_rows_fill_one_micro_batch_x_sequence_len_row():
    b = batch(LENGTHS, settings(ax={"sample_packing": True}))
    # 100 + 200 + 300 + 400 = 1000 tokens fit one bin of 2 x 1024; packing turns on
    # pad_to_sequence_len, so the packed row pads to a multiple of 1024: 1024 processed
    assert b.packed and b.micro_batches == 1 and b.steps == 1
    assert b.processed_tokens == 1024 and b.efficiency == pytest.approx(1000 / 1024)
    assert "packed first-fit" in b.how


def test_packed_without_packing_attention_uses_real_batches():
    # eager attention cannot keep packed rows apart: a micro-batch is 2 bins of 1024 tokens.
    # 600 + 600 > 1024, so each row is its own bin: 4 bins -> 2 micro-batches of 2 rows,
    # every row padded to 1024: 4 * 1024 processed for 4 * 600 useful
    b = batch([600] * 4, settings(ax={"sample_packing": True}, attn="eager"))
    assert b.micro_batches == 2 and b.processed_tokens == 4 * 1024
    assert b.efficiency == pytest.approx(2400 / 4096)
    # a fifth bin cannot fill a micro-batch of 2: the sampler drops it (drop_last)
    assert batch([600] * 5, settings(ax={"sample_packing": True}, attn="eager")).micro_batches == 2


def test_steps_divide_micro_batches_over_gpus_and_accumulation():
    s = settings(ax={"micro_batch_size": 1, "gradient_accumulation_steps": 2}, gpus=2)
    b = batch([10] * 10, s)
    # 10 micro-batches over 2 GPUs = 5 each; ceil(5 / 2) = 3 optimizer steps
    assert b.micro_batches == 10 and b.steps == 3
    assert b.tokens_per_step == pytest.approx(b.processed_tokens / 3)


def test_first_fit_by_hand():
    # 400 opens bin 0 (100 left), 300 opens bin 1 (200 left), 200 goes to bin 1, 100 to bin 0
    assert pack_first_fit([400, 300, 200, 100], 500) == [500, 500]
    # at most one row per bin
    assert pack_first_fit([400, 300, 200, 100], 500, bin_size=1) == [400, 300, 200, 100]
    # packed group by group: the second group never fills the first group's bins
    assert pack_first_fit([300, 300, 100, 100], 500, group_size=2) == [300, 300, 200]


def test_first_fit_matches_axolotl_pack_group():
    import numpy as np
    from axolotl.utils.samplers.multipack import pack_group

    rng = random.Random(7)
    for _ in range(20):
        n = rng.randint(1, 800)
        cap = rng.choice([64, 700, 2048])
        bin_size = rng.choice([1, 3, 200])
        lengths = [rng.randint(1, cap) for _ in range(n)]
        bins = pack_group(np.array(lengths, dtype=np.int32), 0, cap, n, bin_size, True)
        assert pack_first_fit(lengths, cap, bin_size) == [sum(lengths[i] for i in b)
                                                          for b in bins]


def test_expected_batch_max_equals_enumeration():
    rng = random.Random(3)
    for _ in range(10):
        lengths = [rng.randint(1, 50) for _ in range(rng.randint(1, 7))]
        for k in range(1, len(lengths) + 1):
            draws = list(itertools.combinations(range(len(lengths)), k))
            brute = sum(max(lengths[i] for i in d) for d in draws) / len(draws)
            assert expected_batch_max(lengths, k) == pytest.approx(brute)


def test_settings_read_axolotl_keys():
    s = settings(ax={"sample_packing": True, "excess_length_strategy": "truncate",
                     "max_steps": 5, "pad_to_multiple_of": 8})
    assert s.packed and s.pad_to_sequence_len is True and s.excess == "truncate"
    assert s.max_steps == 5 and s.pad_multiple == 8 and not s.real_batches
    assert settings(attn="sdpa", ax={"sample_packing": True}).real_batches
    assert not settings(ax={"sample_packing": True, "multipack_real_batches": False},
                        attn="sdpa").real_batches
    assert replace(s, packed=False).pad_to_sequence_len is True
