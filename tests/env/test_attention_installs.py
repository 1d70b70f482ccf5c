"""No recipe names an attention implementation whose package no lock installs.

Each recipe's resolved `axolotl.attn_implementation` is read from its committed snapshot
(recipes/.lock/<recipe>.yaml, `make lock`), mapped to the distributions that implementation
imports at model load, and each must be pinned in requirements.lock or requirements-gpu.lock,
i.e. installed by `make setup` / `make setup-gpu` alone.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from axolotl.utils.schemas.enums import (
    ATTN_IMPLS_USING_FLASH_LIB,
    CANONICAL_ATTN_IMPLS,
    attn_impl_base,
)
from envhelp import ROOT

# Axolotl 0.19's canonical attn_implementation values -> the distributions each needs
# (transformers' is_flash_attn_*_available checks and Axolotl's monkeypatches name them).
ATTENTION_DISTRIBUTIONS: dict[str, frozenset[str]] = {
    "eager": frozenset({"torch"}),
    "sdpa": frozenset({"torch"}),  # torch's flash / memory-efficient kernels ship inside it
    "flex_attention": frozenset({"torch"}),
    "flash_attention_torch": frozenset({"torch"}),
    "flash_attention_2": frozenset({"flash-attn"}),
    "flash_attention_3": frozenset({"flash-attn-3"}),
    "flash_attention_4": frozenset({"flash-attn-4"}),
    "xformers": frozenset({"xformers"}),
    "sage": frozenset({"sageattention"}),
    "fp8": frozenset({"torchao", "flash-attn-3"}),  # torchao's low-precision attention on FA3
}
DEFAULT = "sdpa"  # what transformers picks when a recipe names none
LOCKS = ("requirements.lock", "requirements-gpu.lock")


def distributions_for(implementation: str | None) -> frozenset[str]:
    """The distributions an attn_implementation needs; a hub-kernel path ('org/name',
    optionally '@revision' or ':kernel') needs `kernels`, plus flash-attn where Axolotl's own
    patches for it import flash_attn."""
    impl = implementation or DEFAULT
    if "/" in impl:
        need = {"kernels"}
        if attn_impl_base(impl) in ATTN_IMPLS_USING_FLASH_LIB:
            need.add("flash-attn")
        return frozenset(need)
    if impl not in ATTENTION_DISTRIBUTIONS:
        raise ValueError(f"attn_implementation {impl!r} is not one Axolotl accepts "
                         f"({', '.join(sorted(ATTENTION_DISTRIBUTIONS))} or 'org/kernel')")
    return ATTENTION_DISTRIBUTIONS[impl]


def locked(root: Path) -> set[str]:
    names = set()
    for lock in LOCKS:
        for line in (root / lock).read_text().splitlines():
            m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==", line)
            if m:
                names.add(re.sub(r"[-_.]+", "-", m.group(1)).lower())
    return names


def missing(root: Path) -> list[str]:
    """One line per recipe whose attention implementation needs an unlocked distribution."""
    have = locked(root)
    out = []
    for snap in sorted((root / "recipes" / ".lock").glob("*.yaml")):
        impl = (yaml.safe_load(snap.read_text()).get("axolotl") or {}).get("attn_implementation")
        need = sorted(distributions_for(impl) - have)
        if need:
            out.append(f"{snap.stem}: attn_implementation {impl} needs {', '.join(need)}, "
                       f"which neither {' nor '.join(LOCKS)} installs")
    return out


def test_every_recipe_attention_installs_from_the_locks():
    problems = missing(ROOT)
    assert not problems, ("recipes whose attention no lock installs (pick one that ships "
                          "with torch, e.g. sdpa):\n" + "\n".join(problems))


# The mapping, on Axolotl's own list and on small fake snapshots.

def test_the_map_covers_every_implementation_axolotl_accepts():
    assert set(ATTENTION_DISTRIBUTIONS) == set(CANONICAL_ATTN_IMPLS)


@pytest.mark.parametrize(("impl", "need"), [
    (None, {"torch"}),
    ("sdpa", {"torch"}),
    ("eager", {"torch"}),
    ("flash_attention_2", {"flash-attn"}),
    ("xformers", {"xformers"}),
    ("kernels-community/flash-attn3", {"kernels", "flash-attn"}),
    ("kernels-community/flash-attn2@v2:flash_attn", {"kernels", "flash-attn"}),
    ("kernels-community/sage-attention", {"kernels"}),
])
def test_distributions_for(impl, need):
    assert distributions_for(impl) == need


def test_an_unknown_implementation_is_refused_by_name():
    with pytest.raises(ValueError, match="'flash' is not one Axolotl accepts"):
        distributions_for("flash")


def fake_repo(tmp: Path, recipes: dict[str, str | None], lock_pins: list[str]) -> Path:
    (tmp / "recipes" / ".lock").mkdir(parents=True)
    for name, impl in recipes.items():
        ax = {"base_model": "x"} | ({"attn_implementation": impl} if impl else {})
        (tmp / "recipes" / ".lock" / f"{name}.yaml").write_text(yaml.safe_dump({"axolotl": ax}))
    (tmp / "requirements.lock").write_text("".join(f"{p} \\\n    --hash=sha256:00\n"
                                                   for p in lock_pins))
    (tmp / "requirements-gpu.lock").write_text("DeepSpeed==0.18.9\n")
    return tmp


def test_missing_names_each_recipe_and_its_package(tmp_path):
    root = fake_repo(tmp_path, {"a-sdpa": "sdpa", "b-fa2": "flash_attention_2", "c-none": None,
                                "d-hub": "kernels-community/flash-attn3", "e-xf": "xformers"},
                     ["torch==2.13.0", "xformers[fa]==0.0.35", "kernels==0.16.2"])
    assert missing(root) == [
        "b-fa2: attn_implementation flash_attention_2 needs flash-attn, which neither "
        "requirements.lock nor requirements-gpu.lock installs",
        "d-hub: attn_implementation kernels-community/flash-attn3 needs flash-attn, which "
        "neither requirements.lock nor requirements-gpu.lock installs",
    ]


def test_a_package_in_the_gpu_lock_counts(tmp_path):
    root = fake_repo(tmp_path, {"fa2": "flash_attention_2"}, ["torch==2.13.0"])
    (root / "requirements-gpu.lock").write_text("flash_attn==2.8.3 \\\n    --hash=sha256:00\n")
    assert missing(root) == []
