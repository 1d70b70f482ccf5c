"""Units of the plan: GiB (2**30 bytes) throughout, and counts written the way people read them.

NVIDIA's "24 GB" cards hold 24 GiB, so the GPU table's ``memory_gb`` is read as GiB; JSON keys
keep the ``_gb`` suffix the rest of tunebook uses.
"""

from __future__ import annotations

GIB = 2**30


def gb(nbytes: float) -> float:
    """Bytes in GiB."""
    return nbytes / GIB


def human(count: float) -> str:
    """A parameter or FLOP count, readable at any size: 7.24B, 83.9M, 672k."""
    for div, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(count) >= div:
            return f"{count / div:.3g}{unit}"
    return f"{count:.3g}"
