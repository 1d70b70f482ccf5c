"""Every launcher option composes and validates with every method, or fails with a clear message.

Launchers and methods are discovered from disk, so a new option is covered without editing this
file; the invalid pairs are listed with the message that must explain them.
"""

from __future__ import annotations

import json

import pytest

from tunebook import compose, paths, validate
from tunebook.errors import UserError
from tunebook.plan.settings import deepspeed_stage

LAUNCHERS = compose.group_options("launcher")
METHODS = compose.group_options("method")

# (method, launcher) pairs that must fail, and a fragment of the message that says why.
INVALID = {
    ("full", "fsdp2"): "adamw_bnb_8bit fails under FSDP2",
}


def _representative(method: str) -> str:
    """The first recipe using ``method`` that is planned on a bf16 GPU (ZeRO-3 QLoRA needs bf16)."""
    from tunebook import gpus

    for name in compose.recipe_names():
        composed = compose.compose_recipe(name, with_sources=True)
        gpu = gpus.table().get(composed.config["meta"]["gpu"])
        if composed.choices.get("method") == method and gpu is not None and gpu.bf16:
            return name
    pytest.fail(f"no recipe on a bf16 GPU uses method {method}")


def test_launcher_options_on_disk():
    assert {"single", "ddp", "deepspeed-zero2", "deepspeed-zero3", "deepspeed-zero3-offload",
            "fsdp2"} <= set(LAUNCHERS)
    assert len(METHODS) >= 4


@pytest.mark.parametrize("launcher", LAUNCHERS)
@pytest.mark.parametrize("method", METHODS)
def test_launcher_x_method(method: str, launcher: str):
    recipe = _representative(method)
    overrides = [f"launcher={launcher}"]
    if (method, launcher) in INVALID:
        with pytest.raises(UserError) as err:
            validate.validate_recipe(recipe, overrides)
        assert INVALID[(method, launcher)] in str(err.value)
        assert "set axolotl.optimizer=" in str(err.value)  # the message names the fix
        return
    result = validate.validate_recipe(recipe, overrides)
    lk = result.recipe.launcher
    assert lk.name == launcher
    ax = result.config["axolotl"]
    if lk.kind == "deepspeed":
        assert (paths.ROOT / ax["deepspeed"]).is_file()
        assert "fsdp_config" not in ax
    elif lk.kind == "fsdp":
        assert ax["fsdp_version"] == 2 and ax["fsdp_config"]["auto_wrap_policy"]
        assert "deepspeed" not in ax
    else:
        assert "deepspeed" not in ax and "fsdp_config" not in ax


@pytest.mark.parametrize("launcher", [x for x in LAUNCHERS if x.startswith("deepspeed")])
def test_deepspeed_json_matches_launcher_flags(launcher: str):
    cfg = compose.compose_recipe("llama8b-lora-support", [f"launcher={launcher}"]).config
    ds = json.loads((paths.ROOT / cfg["axolotl"]["deepspeed"]).read_text())
    zero = ds["zero_optimization"]
    assert (zero["stage"] == 3) == cfg["launcher"].get("shards_weights", False)
    # the flags describe the stage the planner reads from the file (ZeRO-1 has no flag of its own)
    flags = cfg["launcher"]
    by_flags = 3 if flags.get("shards_weights") else 2 if flags.get("shards_optimizer") else 0
    assert deepspeed_stage(cfg["axolotl"]["deepspeed"]) == zero["stage"] == by_flags
    assert ("offload_param" in zero) == cfg["launcher"].get("offload", False)
    # batch sizes come from the recipe, never from the JSON
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps",
                "train_batch_size", "gradient_clipping"):
        assert ds[key] == "auto"


def _error(recipe: str, overrides: str) -> str:
    with pytest.raises(UserError) as err:
        validate.validate_recipe(recipe, overrides, axolotl=False)
    return str(err.value)


RULE_CASES = [
    # QLoRA with sharded weights on a GPU without bf16 (T4)
    ("phi3.5mini-qlora-triage", "launcher=deepspeed-zero3", "axolotl.bf16",
     "bnb_4bit_quant_storage"),
    ("phi3.5mini-qlora-triage", "launcher=fsdp2", "axolotl.bf16", "launcher=ddp"),
    ("mistral7b-qlora-support",
     "launcher=deepspeed-zero3 axolotl.gradient_checkpointing_kwargs.use_reentrant=false",
     "use_reentrant", "CheckpointError"),
    ("mistral7b-qlora-support",
     "launcher=fsdp2 +axolotl.fsdp_config.cpu_ram_efficient_loading=true",
     "cpu_ram_efficient_loading", "set it to false"),
    ("mistral7b-qlora-support", "launcher=fsdp2 ~axolotl.fsdp_config.auto_wrap_policy",
     "auto_wrap_policy", "TRANSFORMER_BASED_WRAP"),
    ("mistral7b-qlora-support",
     "launcher=fsdp2 axolotl.fsdp_config.auto_wrap_policy=SIZE_BASED_WRAP",
     "min_num_params", "SIZE_BASED_WRAP"),
    ("mistral7b-qlora-support",
     "launcher=fsdp2 +axolotl.fsdp_config.transformer_layer_cls_to_wrap=LlamaDecoderLayer",
     "transformer_layer_cls_to_wrap", "'MistralDecoderLayer'"),
    ("mistral7b-qlora-support", "launcher=fsdp2 axolotl.fsdp_version=1", "fsdp_version",
     "FSDP2 only"),
    ("llama8b-dpo-support", "launcher=fsdp2 +axolotl.load_in_4bit=true", "axolotl.load_in_4bit",
     "deepspeed-zero3"),
    ("llama8b-lora-support", "launcher=deepspeed-zero3-offload axolotl.optimizer=paged_adamw_8bit",
     "axolotl.optimizer", "adamw_torch"),
    ("mistral7b-qlora-support", "launcher=single launcher.gpus_per_node=2",
     "launcher.gpus_per_node", "launcher=ddp"),
    ("mistral7b-qlora-support", "launcher=ddp +launcher.offload=true", "launcher.offload",
     "needs DeepSpeed or FSDP"),
    ("llama8b-lora-support", "launcher=deepspeed-zero2 launcher.shards_optimizer=false",
     "launcher.shards_optimizer", "ZeRO stage 2"),
    ("llama8b-lora-support", "launcher=deepspeed-zero3 launcher.shards_weights=false",
     "launcher.shards_weights", "ZeRO stage 3"),
    ("llama8b-lora-support",
     "launcher=ddp +axolotl.deepspeed=recipes/launcher/deepspeed/zero2.json",
     "axolotl.deepspeed", "does not shard"),
    ("llama8b-lora-support",
     "launcher=fsdp2 +axolotl.deepspeed=recipes/launcher/deepspeed/zero3.json",
     "axolotl.deepspeed", "exclusive"),
    ("llama8b-lora-support", "launcher=deepspeed-zero2 ~axolotl.deepspeed", "axolotl.deepspeed",
     "no DeepSpeed config"),
    ("llama8b-lora-support", "launcher=fsdp2 ~axolotl.fsdp_config ~axolotl.fsdp_version",
     "axolotl.fsdp_config", "is not set"),
    ("llama8b-lora-support",
     "launcher=deepspeed-zero2 axolotl.deepspeed=recipes/launcher/deepspeed/nope.json",
     "axolotl.deepspeed", "does not exist"),
]


@pytest.mark.parametrize(("recipe", "overrides", "key", "fragment"), RULE_CASES)
def test_invalid_combination_names_key_and_fix(recipe, overrides, key, fragment):
    msg = _error(recipe, overrides)
    assert key in msg and fragment in msg, msg


@pytest.mark.parametrize(("name", "text", "fragment"), [
    ("_test_bad.json", '{\n  "zero_optimization": {\n    "stage": 3,\n  }\n}\n',
     "_test_bad.json:4: malformed JSON"),
    ("_test_bad_stage.json", '{"zero_optimization": {"stage": 5}}',
     "zero_optimization.stage is 5 in"),
])
def test_malformed_deepspeed_json_names_line(name, text, fragment):
    # one file per case: xdist may run the cases at once
    bad = paths.ROOT / "recipes" / "launcher" / "deepspeed" / name
    bad.write_text(text)
    try:
        msg = _error("llama8b-lora-support",
                     f"launcher=deepspeed-zero3 axolotl.deepspeed={paths.rel(bad)}")
    finally:
        bad.unlink()
    assert fragment in msg


def test_full_dpo_under_zero3_warns_about_reference_model():
    result = validate.validate_recipe(
        "llama8b-dpo-support", "launcher=deepspeed-zero3 ~axolotl.adapter", axolotl=False)
    assert any(w.key == "axolotl.rl" and "reference model" in w.message for w in result.warnings)
    quiet = validate.validate_recipe("llama8b-dpo-support", "launcher=deepspeed-zero3",
                                     axolotl=False)
    assert not any(w.key == "axolotl.rl" for w in quiet.warnings)


def test_invalid_combination_exits_2_without_traceback():
    import os
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).parent / "tunebook"
    proc = subprocess.run([str(exe), "validate", "--recipe", "qwen1.5b-full-triage",
                           "--overrides", "launcher=fsdp2"], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("tunebook: error: recipe qwen1.5b-full-triage: ")
    assert "recipes/method/full.yaml: axolotl.optimizer" in proc.stderr
