"""Parity with the peer: every GPU recipe is at least as fast as Axolotl's own example for its
family and method, or says why not.

For each GPU recipe the throughput-relevant keys of its effective configuration (what Axolotl's
own ``validate_config`` makes of it, defaults included) are compared with those of the vendored
Axolotl example (``tests/fixtures/axolotl-examples/``) for the same family and method. Every
difference must carry a ``# why:`` on the line that sets the recipe's value, in the recipe or
the group file the composer names as its source. Offline: nothing is downloaded.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tunebook import axolotl_schema, compose, paths
from tunebook.validate import _has_why

EXAMPLES = Path(__file__).parents[1] / "fixtures" / "axolotl-examples"
LIGER = "axolotl.integrations.liger.LigerPlugin"

# (family, method kind) -> Axolotl's example. Where Axolotl has none for the pair, the closest:
# Gemma 2 has only a QLoRA example (LoRA differs by the 4-bit base alone); Phi-3.5 mini has only
# an 8-bit LoRA one; Qwen2's LoRA peer is its QLoRA example (no Qwen2 LoRA), and its only
# full-weight example is the AdamW pretraining one.
PEERS = {
    ("mistral", "qlora"): "mistral_qlora.yml",
    ("mistral", "lora"): "mistral_lora.yml",
    ("mistral", "dpo"): "mistral_dpo_mistral-dpo-qlora.yml",
    ("llama", "qlora"): "llama-3_qlora.yml",
    ("llama", "lora"): "llama-3_lora-8b.yml",
    ("llama", "dpo"): "llama-3_instruct-dpo-lora-8b.yml",
    ("gemma2", "qlora"): "gemma2_qlora.yml",
    ("gemma2", "lora"): "gemma2_qlora.yml",
    ("phi3", "qlora"): "phi_lora-3.5.yaml",
    ("qwen2", "qlora"): "qwen2_qlora-fsdp.yaml",
    ("qwen2", "lora"): "qwen2_qlora-fsdp.yaml",
    ("qwen2", "full"): "qwen2_adamw-pretrain-fsdp2.yaml",
}

# Throughput-relevant keys: a key here either names an Axolotl key, or is derived (below) from
# the keys that set it, any one of which may carry the `# why:`.
KEYS = ("sample_packing", "eval_sample_packing", "pad_to_sequence_len", "attn_implementation",
        "liger_rope", "liger_rms_norm", "liger_glu_activation",
        "liger_fused_linear_cross_entropy", "gradient_checkpointing", "optimizer", "bf16",
        "fp16", "tf32", "micro_batch_size")
DERIVED = {
    "liger plugin": (("plugins",), lambda c: LIGER in (c.get("plugins") or [])),
    "rows per optimizer step": (("micro_batch_size", "gradient_accumulation_steps"),
                                lambda c: c["micro_batch_size"] * c["gradient_accumulation_steps"]),
}
BOOLEAN_OFF = (None, False)  # unset and false mean the same to Axolotl for these flags


def gpu_recipes(recipes_dir: Path | None = None) -> list[str]:
    return [n for n in compose.recipe_names(recipes_dir)
            if compose.compose_recipe(n, recipes_dir=recipes_dir).config["meta"]["gpu"] != "cpu"]


@functools.cache
def _peer(file: str) -> dict[str, Any]:
    return effective(yaml.safe_load((EXAMPLES / file).read_text(encoding="utf-8")), file)


def effective(section: dict[str, Any], where: str) -> dict[str, Any]:
    """The configuration Axolotl trains with: its ``validate_config`` output (defaults set)."""
    return axolotl_schema.run_validate_config(section, where)


def _same(a: Any, b: Any) -> bool:
    return a == b or (a in BOOLEAN_OFF and b in BOOLEAN_OFF)


def differences(name: str, recipes_dir: Path | None = None) -> tuple[str, list[str]]:
    """(peer file, one line per throughput difference that no `# why:` explains)."""
    composed = compose.compose_recipe(name, recipes_dir=recipes_dir, with_sources=True)
    meta = composed.config["meta"]
    peer_file = PEERS[(meta["model"]["family"], meta["method"]["kind"])]
    ours, peer = effective(composed.config["axolotl"], name), _peer(peer_file)
    checks = [(key, (key,), ours.get(key), peer.get(key)) for key in KEYS]
    checks += [(key, setters, fn(ours), fn(peer)) for key, (setters, fn) in DERIVED.items()]
    unexplained = []
    for key, setters, mine, theirs in checks:
        if _same(mine, theirs):
            continue
        files = [composed.sources.get(f"axolotl.{s}") for s in setters]
        if any(_has_why(f"axolotl.{s}", composed.sources) for s in setters):
            continue
        where = ", ".join(sorted({f for f in files if f})) or "no file (an Axolotl default)"
        unexplained.append(f"{key}: {mine!r} here, {theirs!r} in {peer_file}; set in {where} "
                           "without a `# why:`")
    return peer_file, unexplained


def test_every_gpu_recipe_has_a_peer_example():
    names = gpu_recipes()
    assert len(names) >= 13
    for name in names:
        meta = compose.compose_recipe(name).config["meta"]
        pair = (meta["model"]["family"], meta["method"]["kind"])
        assert pair in PEERS, f"{name}: no Axolotl example named for {pair}"
        assert (EXAMPLES / PEERS[pair]).is_file(), PEERS[pair]


@pytest.mark.parametrize("name", gpu_recipes())
def test_gpu_recipe_matches_its_peer_or_says_why(name):
    peer_file, unexplained = differences(name)
    assert not unexplained, f"{name} vs {peer_file}:\n  " + "\n  ".join(unexplained)


@pytest.mark.parametrize("name", gpu_recipes())
def test_gpu_recipe_packs_and_uses_liger_unless_it_says_why(name):
    """The two largest wins over the peer are on: packing (SFT) and Liger's fused kernels."""
    composed = compose.compose_recipe(name, with_sources=True)
    ax = composed.config["axolotl"]
    for key in ("sample_packing", "liger_rope", "liger_rms_norm", "liger_glu_activation",
                "liger_fused_linear_cross_entropy"):
        if not ax.get(key):
            assert _has_why(f"axolotl.{key}", composed.sources), f"{name}: {key} off, no why"
    assert LIGER in ax["plugins"]
    if ax.get("rl"):
        assert ax["sample_packing"] is False  # Axolotl 0.19.0 rejects packing with rl
    else:
        assert ax["sample_packing"] is True and ax["eval_sample_packing"] is True


def _drop_packing(root: Path, why: str) -> None:
    recipe = root / "recipes" / "mistral7b-qlora-support.yaml"
    text = recipe.read_text(encoding="utf-8")
    recipe.write_text(text + f"  sample_packing: false             #{why} test\n"
                      f"  eval_sample_packing: false        # why: as training\n",
                      encoding="utf-8")


@pytest.mark.parametrize("why", ["", " why:"])
def test_dropping_packing_needs_a_why(scratch_root, monkeypatch, why):
    """On a scratch copy of recipes/, a recipe that turns packing off without a `# why:` fails
    the parity check, naming the key, the peer and the file; with one, it passes."""
    monkeypatch.setattr(paths, "ROOT", scratch_root)  # sources and `# why:` lookups read it
    recipes = scratch_root / "recipes"
    _drop_packing(scratch_root, why)
    peer, unexplained = differences("mistral7b-qlora-support", recipes)
    assert peer == "mistral_qlora.yml"
    if why:
        assert unexplained == []
    else:
        (line,) = unexplained
        assert line.startswith("sample_packing: False here, True in mistral_qlora.yml")
        assert "recipes/mistral7b-qlora-support.yaml" in line


def test_a_group_default_without_why_is_caught(scratch_root, monkeypatch):
    """The `# why:` may sit in the group file that sets the value; removing it there fails every
    recipe that takes the value, and the message names that group file."""
    monkeypatch.setattr(paths, "ROOT", scratch_root)
    train = scratch_root / "recipes" / "method" / "_train.yaml"
    text = train.read_text(encoding="utf-8")
    line = next(x for x in text.splitlines() if x.lstrip().startswith("tf32:"))
    train.write_text(text.replace(line, re.sub(r"#\s*why:", "#", line)), encoding="utf-8")
    _, unexplained = differences("mistral7b-qlora-support", scratch_root / "recipes")
    assert [u.split(":")[0] for u in unexplained] == ["tf32"]
    assert "recipes/method/_train.yaml" in unexplained[0]


def test_liger_settings_are_those_of_axolotls_own_liger_example():
    """The shared Liger part names the plugin and turns on the kernels exactly as Axolotl's own
    Llama + Liger example does (no extra or misspelt kernel, no other plugin path)."""
    example = yaml.safe_load((EXAMPLES / "llama-3_fft-8b-liger-fsdp.yaml").read_text())
    ours = yaml.safe_load((paths.RECIPES / "model" / "_liger.yaml").read_text())["axolotl"]
    theirs = {k: v for k, v in example.items() if k == "plugins" or k.startswith("liger_")}
    assert ours == theirs



def test_model_options_load_liger_exactly_for_the_families_it_patches():
    """A model option includes _liger when the installed liger-kernel patches its family and
    Axolotl does not declare Liger unsupported for it; never otherwise."""
    from axolotl.model_support import Unsupported, get_model_support, resolve_model_support
    from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN

    from tunebook import families

    for option in compose.group_options("model"):
        data = yaml.safe_load((paths.RECIPES / "model" / f"{option}.yaml").read_text())
        model_type = families.get(data["meta"]["model"]["family"]).model_type
        support = get_model_support(model_type)
        refused = support is not None and isinstance(
            resolve_model_support(support).capabilities.get("liger"), Unsupported)
        patched = model_type in MODEL_TYPE_TO_APPLY_LIGER_FN and not refused
        assert ("_liger" in data.get("defaults", [])) == patched, f"model/{option}.yaml"
