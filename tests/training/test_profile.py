"""The cpu-smoke profile swaps any recipe onto its twin and changes only what a CPU needs."""

from __future__ import annotations

import pytest

from tunebook import compose, paths, twins

CPU_KEYS = {"base_model", "attn_implementation", "bf16", "fp16", "tf32", "lora_mlp_kernel",
            "lora_qkv_kernel", "lora_o_kernel", "optimizer", "gradient_checkpointing",
            "micro_batch_size", "gradient_accumulation_steps", "max_steps", "warmup_ratio",
            "eval_steps", "save_steps", "logging_steps", "dataset_num_proc", "liger_rope",
            "liger_rms_norm", "liger_glu_activation", "liger_fused_linear_cross_entropy"}


@pytest.mark.parametrize("name", compose.recipe_names())
def test_profile_moves_the_recipe_onto_its_twin_and_keeps_the_rest(name):
    plain = compose.compose_recipe(name).config
    smoke = compose.compose_recipe(name, ["+profile=cpu-smoke"]).config
    family = plain["meta"]["model"]["family"]
    ax = smoke["axolotl"]
    assert ax["base_model"] == paths.rel(twins.twin_path(family))
    assert ax["bf16"] is False and ax["fp16"] is False and ax["tf32"] is False
    assert ax["attn_implementation"] == ("eager" if family == "gemma2" else "sdpa")
    assert ax["optimizer"] == "adamw_torch" and ax["max_steps"] > 0
    assert not any(ax.get(k) for k in ax if k.startswith("liger_"))  # Triton kernels: GPU only
    assert ax["save_steps"] % ax["eval_steps"] == 0
    # everything else of the recipe is as it was: method, task, data, LoRA shape, 4-bit
    for key, value in plain["axolotl"].items():
        if key not in CPU_KEYS:
            assert ax[key] == value, key
    for section in ("data", "eval", "launcher"):
        assert smoke[section] == plain[section]
    assert smoke["meta"]["model"] == plain["meta"]["model"]
    if plain["meta"]["method"]["kind"] == "qlora":
        assert ax["load_in_4bit"] is True and ax["adapter"] == "qlora"
