"""Every GPU recipe passes Axolotl's own validate_config as it runs on each GPU it is planned for.

Axolotl checks more with the GPU's capabilities than without (bf16, compute capability, ...).
``axolotl train`` probes them from the device; here they come from ``recipes/hardware/gpus.yaml``
(``compute_capability`` as Axolotl's ``gpu_capabilities()`` reports it), for every GPU the
recipe's ``meta.hardware`` names, so a T4 recipe is checked as sm_75 and a 24 GB one as L4
(sm_89), A10G (sm_86) and RTX 4090 (sm_89). tunebook's own rules run for each GPU too.
"""

from __future__ import annotations

import re

import pytest
import torch

from tunebook import axolotl_schema, compose, gpus
from tunebook.errors import UserError
from tunebook.validate import validate_recipe

TORCH = torch.__version__.split("+", 1)[0]


def planned_gpus(config: dict) -> list[gpus.GPU]:
    """The planned GPU and every other one ``meta.hardware`` names, e.g. '1x 24 GB (L4, A10G)'."""
    table = gpus.table()
    found = [table[config["meta"]["gpu"]]]
    listed = re.search(r"\((.*)\)", config["meta"].get("hardware") or "")
    for piece in (listed.group(1).split(",") if listed else []):
        for gpu in table.values():
            if gpu.name.removeprefix("NVIDIA ").startswith(piece.strip()) and gpu not in found:
                found.append(gpu)
    return found


def capabilities(gpu: gpus.GPU, n_gpu: int = 1) -> tuple[dict, dict]:
    """What Axolotl's gpu_capabilities() would report on ``gpu``."""
    major = int(gpu.compute_capability.removeprefix("sm_")) // 10
    caps = {"bf16": gpu.bf16, "fp8": major >= 9, "tf32": major >= 8, "n_gpu": n_gpu,
            "compute_capability": gpu.compute_capability}
    return caps, {"torch_version": TORCH}


def validate_on(section: dict, gpu: gpus.GPU) -> dict:
    return axolotl_schema.run_validate_config(section, gpu.id, *capabilities(gpu))


GPU_RECIPES = [n for n in compose.recipe_names()
               if compose.compose_recipe(n).config["meta"]["gpu"] != "cpu"]


def test_planned_gpus_are_read_from_the_header_line():
    config = compose.compose_recipe("gemma9b-qlora-support").config
    assert [g.id for g in planned_gpus(config)] == ["l4-24g", "a10g-24g", "rtx4090-24g"]
    assert {g.compute_capability for g in planned_gpus(config)} == {"sm_89", "sm_86"}
    t4 = compose.compose_recipe("qwen1.5b-lora-support").config
    assert [(g.id, g.compute_capability) for g in planned_gpus(t4)] == [("t4-16g", "sm_75")]


@pytest.mark.parametrize("name", GPU_RECIPES)
def test_recipe_passes_axolotl_with_the_capabilities_of_each_planned_gpu(name):
    config = compose.compose_recipe(name).config
    planned = planned_gpus(config)
    assert planned and all(g.compute_capability for g in planned)
    for gpu in planned:
        section = validate_recipe(name, f"meta.gpu={gpu.id}").config["axolotl"]
        out = validate_on(section, gpu)
        assert out["capabilities"]["compute_capability"] == gpu.compute_capability
        assert out["attn_implementation"] in ("sdpa", "eager")  # in torch: nothing to build
        assert out.get("liger_rms_norm") is True  # plugin keys validated, not dropped


def test_capabilities_are_really_checked():
    """The same section that passes on an A100 is refused on a T4 when it asks for what Turing
    lacks (SageAttention needs sm_80+): validate_config does read the capabilities."""
    section = compose.compose_recipe("qwen7b-lora-clauses").config["axolotl"]
    section = {**section, "attn_implementation": "sage"}
    table = gpus.table()
    validate_on(section, table["a100-40g"])
    with pytest.raises(UserError, match="compute capability"):
        validate_on(section, table["t4-16g"])


def test_a_t4_recipe_moved_to_bf16_fails_tunebooks_own_rule():
    with pytest.raises(UserError, match="no bf16"):
        validate_recipe("phi3.5mini-qlora-triage", "axolotl.bf16=true axolotl.fp16=false")
