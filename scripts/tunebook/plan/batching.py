"""How many tokens a training epoch really processes: packing, padding and steps.

The time estimate multiplies FLOPs per token by the tokens the GPU *processes*, padding included,
so this module turns the dataset's real length distribution (``tunebook.plan.tokens``) into
processed tokens, micro-batches and optimiser steps, the way Axolotl 0.19 batches them:

- **Rows longer than ``sequence_len``** are dropped (``excess_length_strategy: drop``, Axolotl's
  default; a row of exactly ``sequence_len`` is kept) or cut to ``sequence_len`` (``truncate``).
- **Packed** (``sample_packing: true``): Axolotl's ``MultipackBatchSampler`` shuffles the rows
  and packs them first-fit, in that random order, into bins
  (``axolotl.utils.samplers.multipack.pack_group``: at most ``sample_packing_bin_size`` = 200 rows
  a bin, in groups of ``sample_packing_group_size`` = 100,000 rows). With an attention that
  supports packing (FlashAttention, flex, xformers, sage: ``attn_supports_packing``) one bin of
  ``micro_batch_size x sequence_len`` tokens is one micro-batch; otherwise
  (``multipack_real_batches``) a micro-batch is ``micro_batch_size`` bins of ``sequence_len`` and
  the last incomplete micro-batch is dropped. Each bin is one row, padded to a multiple of
  ``sequence_len`` rounded up to 64 (``pad_to_sequence_len``, which packing turns on).
- **Unpacked**: the Trainer's ``RandomSampler`` deals the rows into random micro-batches of
  ``micro_batch_size`` (``group_by_length`` off, Axolotl's default); each micro-batch pads to its
  longest row, rounded up to a multiple of 64 (Axolotl's ``pad_to_multiple_of`` when
  ``pad_to_sequence_len`` is unset), or to ``sequence_len`` when ``pad_to_sequence_len: true``,
  or to the longest row exactly when it is ``false``. The expected padded length of a random
  micro-batch is computed exactly from the order statistics of the lengths.
  ``group_by_length: true`` (HF's ``LengthGroupedSampler``: mega-batches of 50 micro-batches,
  each sorted by length) is simulated with a fixed seed.
- **Steps**: the Trainer takes ``ceil(micro-batches per GPU / gradient_accumulation_steps)``
  optimiser steps an epoch; ``max_steps`` caps the run.

Packing efficiency = useful tokens / processed tokens.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

ATTN_SUPPORTING_PACKING = frozenset({  # axolotl.utils.schemas.enums.ATTN_IMPLS_SUPPORTING_PACKING
    "flash_attention_2", "flash_attention_3", "flash_attention_4", "flash_attention_torch",
    "flex_attention", "xformers", "sage", "kernels-community/flash-attn2",
    "kernels-community/flash-attn3", "kernels-community/sage-attention"})
PAD_MULTIPLE = 64  # Axolotl's default pad_to_multiple_of
BIN_SIZE = 200  # sample_packing_bin_size default: rows per bin
GROUP_SIZE = 100_000  # sample_packing_group_size default: rows packed at a time
LENGTH_GROUPS = 50  # HF LengthGroupedSampler: mega-batch = 50 micro-batches
SEED = 42  # Axolotl's default seed; the shuffles here are an estimate, not the run's own order


@dataclass(frozen=True)
class BatchingSettings:
    """The ``axolotl`` keys that decide how rows become micro-batches."""

    packed: bool
    seq_len: int
    micro_batch: int
    grad_accum: int
    gpus: int
    excess: str  # drop | truncate | raise
    pad_to_sequence_len: bool | None
    pad_multiple: int
    real_batches: bool  # multipack_real_batches: micro_batch bins of seq_len each
    group_by_length: bool
    bin_size: int
    group_size: int
    max_steps: int | None

    @classmethod
    def from_axolotl(cls, ax: dict[str, Any], attn: str, gpus: int) -> BatchingSettings:
        packed = bool(ax.get("sample_packing"))
        pad = ax.get("pad_to_sequence_len")
        if packed and pad is None:
            pad = True  # Axolotl's hint_sample_packing_padding validator
        real = ax.get("multipack_real_batches")
        max_steps = ax.get("max_steps")
        return cls(
            packed=packed, seq_len=int(ax["sequence_len"]),
            micro_batch=int(ax.get("micro_batch_size") or 1),
            grad_accum=int(ax.get("gradient_accumulation_steps") or 1), gpus=gpus,
            excess=str(ax.get("excess_length_strategy") or "drop").lower(),
            pad_to_sequence_len=None if pad is None else bool(pad),
            pad_multiple=int(ax.get("pad_to_multiple_of") or PAD_MULTIPLE),
            real_batches=bool(real) if real is not None else attn not in ATTN_SUPPORTING_PACKING,
            group_by_length=bool(ax.get("group_by_length")),
            bin_size=int(ax.get("sample_packing_bin_size") or BIN_SIZE),
            group_size=int(ax.get("sample_packing_group_size") or GROUP_SIZE),
            max_steps=int(max_steps) if max_steps and int(max_steps) > 0 else None,
        )


@dataclass(frozen=True)
class Batching:
    """One epoch of training as batched: counts over all GPUs together."""

    packed: bool
    sequences: int  # rows trained (after the length filter)
    dropped: int  # rows longer than sequence_len that Axolotl drops
    useful_tokens: int  # their tokens
    processed_tokens: float  # tokens the model runs, padding included
    micro_batches: int
    steps: int  # optimiser steps
    how: str

    @property
    def efficiency(self) -> float:
        return self.useful_tokens / self.processed_tokens if self.processed_tokens else 0.0

    @property
    def tokens_per_step(self) -> float:
        return self.processed_tokens / self.steps if self.steps else 0.0


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def fit_lengths(lengths: Sequence[int], seq_len: int, excess: str) -> tuple[list[int], int]:
    """The lengths Axolotl trains on, and how many rows it drops as longer than ``seq_len``."""
    if excess == "truncate":
        return [min(n, seq_len) for n in lengths], 0
    kept = [n for n in lengths if n <= seq_len]
    return kept, len(lengths) - len(kept)


def pack_first_fit(lengths: Sequence[int], capacity: int, bin_size: int = BIN_SIZE,
                   group_size: int = GROUP_SIZE) -> list[int]:
    """Used tokens of each bin when ``lengths`` (in the order given) are packed first-fit into
    bins of ``capacity`` tokens and at most ``bin_size`` rows, ``group_size`` rows at a time:
    Axolotl's ``pack_group``. A segment tree over the bins' free space finds the first bin that
    fits in O(log bins), so a 100,000-row file packs in about a second."""
    bins: list[int] = []
    for start in range(0, len(lengths), group_size):
        bins += _pack_group(lengths[start:start + group_size], capacity, bin_size)
    return bins


def _pack_group(lengths: Sequence[int], capacity: int, bin_size: int) -> list[int]:
    size = 1
    while size < max(1, len(lengths)):
        size *= 2
    free = [-1] * (2 * size)  # max free space in each subtree; -1 = no open bin there
    used: list[int] = []
    rows: list[int] = []
    for n in lengths:
        if free[1] >= n:  # descend to the leftmost bin with room
            node = 1
            while node < size:
                node = 2 * node if free[2 * node] >= n else 2 * node + 1
            b = node - size
            used[b] += n
            rows[b] += 1
            left = capacity - used[b] if rows[b] < bin_size else -1
        else:  # open a new bin
            b = len(used)
            used.append(n)
            rows.append(1)
            left = capacity - n if bin_size > 1 else -1
        node = b + size
        free[node] = left
        node //= 2
        while node:
            free[node] = max(free[2 * node], free[2 * node + 1])
            node //= 2
    return used


def expected_batch_max(lengths: Sequence[int], k: int) -> float:
    """E[max] of ``k`` rows drawn at random without replacement: the i-th smallest of n
    lengths is the largest of the draw with probability C(i-1, k-1) / C(n, k)."""
    ordered = sorted(lengths)
    n = len(ordered)
    k = min(k, n)
    if k <= 1:
        return sum(ordered) / n if n else 0.0
    log_total = _log_comb(n, k)
    return sum(length * math.exp(_log_comb(i - 1, k - 1) - log_total)
               for i, length in enumerate(ordered, 1) if i >= k)


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _pad_width(longest: int, b: BatchingSettings) -> int:
    if b.pad_to_sequence_len:
        return round_up(b.seq_len, b.pad_multiple)
    if b.pad_to_sequence_len is None:
        return round_up(longest, b.pad_multiple)
    return longest


def batch(lengths: Sequence[int], b: BatchingSettings) -> Batching:
    """One epoch of ``lengths`` (each row's tokens, whole) batched as ``b`` says."""
    kept, dropped = fit_lengths(lengths, b.seq_len, b.excess)
    useful = sum(kept)
    if not kept:
        return Batching(b.packed, 0, dropped, 0, 0.0, 0, 0, "no row fits sequence_len")
    if b.packed:
        processed, micro, how = _packed(kept, b)
    else:
        processed, micro, how = _unpacked(kept, b)
    per_gpu = -(-micro // b.gpus)
    steps = max(-(-per_gpu // b.grad_accum), 1)
    return Batching(b.packed, len(kept), dropped, useful, processed, micro, steps, how)


def _packed(kept: list[int], b: BatchingSettings) -> tuple[float, int, str]:
    order = list(kept)
    random.Random(SEED).shuffle(order)
    # pad_to_sequence_len (on with packing unless set false) pads each packed row to a multiple
    # of sequence_len rounded up to 64; false pads a micro-batch to its longest row only
    pad = round_up(b.seq_len, b.pad_multiple) if b.pad_to_sequence_len else 1
    if not b.real_batches:
        bins = pack_first_fit(order, b.micro_batch * b.seq_len, b.bin_size, b.group_size)
        return float(sum(round_up(u, pad) for u in bins)), len(bins), (
            f"packed: rows shuffled and packed first-fit into one {b.micro_batch} x "
            f"{b.seq_len}-token row per micro-batch, padded to a multiple of {pad}")
    bins = pack_first_fit(order, b.seq_len, b.bin_size, b.group_size)
    micro = len(bins) // b.micro_batch  # the sampler drops the incomplete last micro-batch
    processed = sum(b.micro_batch * round_up(max(bins[i:i + b.micro_batch]), pad)
                    for i in range(0, micro * b.micro_batch, b.micro_batch))
    return float(processed), micro, (
        f"packed: {b.micro_batch} bins of {b.seq_len} tokens a micro-batch "
        "(multipack_real_batches: this attention cannot keep packed rows apart in one sequence)")


def _unpacked(kept: list[int], b: BatchingSettings) -> tuple[float, int, str]:
    n = len(kept)
    micro = -(-n // b.micro_batch)
    pad_how = ("sequence_len" if b.pad_to_sequence_len else
               f"its longest row rounded up to {b.pad_multiple}"
               if b.pad_to_sequence_len is None else "its longest row")
    if b.group_by_length:
        order = list(kept)
        random.Random(SEED).shuffle(order)
        mega = LENGTH_GROUPS * b.micro_batch
        processed = 0.0
        for start in range(0, n, mega):
            group = sorted(order[start:start + mega], reverse=True)
            for i in range(0, len(group), b.micro_batch):
                rows = group[i:i + b.micro_batch]
                processed += len(rows) * _pad_width(rows[0], b)
        return processed, micro, (f"unpacked, group_by_length: mega-batches of {LENGTH_GROUPS} "
                                  f"micro-batches sorted by length; each pads to {pad_how}")
    widths = [_pad_width(length, b) for length in kept]
    processed = (float(sum(widths)) if b.pad_to_sequence_len or b.micro_batch == 1
                 else n * expected_batch_max(widths, b.micro_batch))
    return processed, micro, (f"unpacked: random micro-batches of {b.micro_batch} rows "
                              f"(group_by_length off); each pads to {pad_how}")
