"""Strict validation: unknown keys anywhere, Axolotl's own checks, and each cross-field rule."""

from __future__ import annotations

import pytest

from clihelp import assert_user_error, run_tunebook
from tunebook.errors import UserError
from tunebook.validate import validate_recipe

QLORA = "mistral7b-qlora-support"


def _error(name: str, overrides: str) -> str:
    with pytest.raises(UserError) as info:
        validate_recipe(name, overrides)
    return str(info.value)


def _warnings(name: str, overrides: str) -> list[str]:
    result = validate_recipe(name, overrides)
    return [w.render(result.composed.sources) for w in result.warnings]


# -- unknown keys ------------------------------------------------------------------------------

def test_added_axolotl_typo_names_the_closest_key():
    msg = _error(QLORA, "+axolotl.lora_rr=8")
    assert "axolotl.lora_rr" in msg and "did you mean 'lora_r'" in msg
    assert msg.startswith(f"recipe {QLORA}: override:"), "names where the key came from"


def test_overriding_a_missing_key_without_plus_names_the_closest_key():
    msg = _error(QLORA, "axolotl.lora_rr=8")
    assert "did you mean 'lora_r'" in msg


def test_an_axolotl_key_no_file_sets_is_a_plain_override():
    """Users come from Axolotl: `axolotl.max_steps=1` works without Hydra's `+`, checked against
    the installed Axolotl's schema."""
    composed = validate_recipe(QLORA, "axolotl.max_steps=1 axolotl.lora_r=8").composed
    assert composed.config["axolotl"]["max_steps"] == 1
    assert composed.config["axolotl"]["lora_r"] == 8  # a key the recipe sets: still overridden
    assert "max_steps" not in validate_recipe(QLORA, "").config["axolotl"]
    assert composed.overrides == ["++axolotl.max_steps=1", "++axolotl.lora_r=8"]


def test_an_invalid_axolotl_key_fails_through_the_cli_with_the_closest_names():
    result = run_tunebook("validate", "--recipe", QLORA, "--overrides", "axolotl.lora_rr=8")
    assert_user_error(result, "override 'axolotl.lora_rr'", "did you mean 'lora_r'")
    assert "'lora_rr'" not in result.err.split("did you mean", 1)[1]


def test_a_hydra_error_never_suggests_the_input_itself():
    """`meta.title` exists, but after `~meta.title` Hydra cannot override it: say so, never
    "did you mean 'title'"."""
    msg = _error(QLORA, "~meta.title meta.title=x")
    assert "override 'meta.title'" in msg and "did you mean" not in msg
    assert "'++meta.title=...'" in msg


def test_unknown_key_in_our_sections():
    msg = _error(QLORA, "+meta.titel=x")
    assert "meta.titel" in msg and "did you mean 'title'" in msg


def test_unknown_key_in_a_dataset_entry():
    msg = _error(QLORA, "+axolotl.datasets.0.field_mesages=messages")
    assert "axolotl.datasets[0].field_mesages" in msg and "'field_messages'" in msg


def test_unknown_key_in_a_group_file_names_the_file(scratch_root):
    qlora = scratch_root / "recipes" / "method" / "qlora.yaml"
    qlora.write_text(qlora.read_text().replace("  load_in_4bit: true", "  load_in_4bit: true\n"
                                               "  lora_rr: 8"))
    result = run_tunebook("validate", "--recipe", QLORA, root=scratch_root)
    assert_user_error(result, "recipes/method/qlora.yaml", "axolotl.lora_rr", "'lora_r'")


def test_unknown_key_in_a_recipe_names_the_recipe(scratch_root):
    recipe = scratch_root / "recipes" / f"{QLORA}.yaml"
    recipe.write_text(recipe.read_text() + "  micro_bach_size: 4  # why: typo\n")
    result = run_tunebook("validate", "--recipe", QLORA, root=scratch_root)
    assert_user_error(result, f"recipes/{QLORA}.yaml", "micro_bach_size", "'micro_batch_size'")


def test_axolotl_own_validator_runs():
    msg = _error(QLORA, "+axolotl.warmup_steps=10")
    assert "Axolotl rejects the config" in msg and "warmup" in msg


def test_wrong_type_in_our_section():
    msg = _error(QLORA, "data.checks.max_label_imbalance=0.5")
    assert "data.checks.max_label_imbalance" in msg


# -- cross-field rules -------------------------------------------------------------------------

def test_qlora_needs_4bit_loading():
    assert "load_in_4bit" in _error(QLORA, "axolotl.load_in_4bit=false")


def test_qlora_method_needs_qlora_adapter():
    assert "adapter: qlora" in _error(QLORA, "axolotl.adapter=lora")


def test_learning_rate_outside_range_warns_with_the_range():
    warnings = _warnings(QLORA, "axolotl.learning_rate=0.001")
    assert any("0.0002-0.0005" in w and "axolotl.learning_rate" in w for w in warnings)
    assert _warnings(QLORA, "") == []


def test_a_warning_answered_by_a_why_comment_is_kept_quiet(scratch_root):
    """The embedded default's learning rate is out of LoRA's range on purpose and says why:
    ``validate`` notes it, ``train`` stays quiet. The same value from the command line, or the
    line without its comment, still warns."""
    result = validate_recipe("tiny-lora-triage", "", axolotl=False)
    assert result.warnings == []
    assert [w.key for w in result.acknowledged] == ["axolotl.learning_rate"]
    assert _warnings("tiny-lora-triage", "axolotl.learning_rate=0.004")

    def validate(*extra: str) -> str:
        r = run_tunebook("validate", "--recipe", "tiny-lora-triage", *extra, root=scratch_root)
        assert r.code == 0, r.text
        return r.err

    err = validate()
    assert "note: recipes/profile/tiny-lora.yaml: axolotl.learning_rate" in err  # set there
    assert "warning:" not in err
    profile = scratch_root / "recipes" / "profile" / "tiny-lora.yaml"
    text = profile.read_text(encoding="utf-8")
    assert "3.0e-3             # why:" in text
    profile.write_text(text.replace("3.0e-3             # why:", "3.0e-3             #"),
                       encoding="utf-8")
    assert "warning: recipes/profile/tiny-lora.yaml: axolotl.learning_rate" in validate()


def test_dpo_needs_preference_data():
    msg = _error("mistral7b-dpo-support", "task=support")
    assert "data.format" in msg and "preference" in msg


def test_preference_data_needs_a_preference_method():
    assert "axolotl.rl" in _error("mistral7b-dpo-support", "method=lora")


def test_sequence_len_within_model_positions():
    msg = _error("gemma9b-qlora-support", "axolotl.sequence_len=16384")
    assert "8192" in msg and "axolotl.sequence_len" in msg


def test_flash_attention_on_hardware_without_it():
    msg = _error(QLORA, "meta.gpu=t4-16g axolotl.attn_implementation=flash_attention_2")
    assert "FlashAttention-2 does not run" in msg and "T4" in msg


@pytest.mark.parametrize("attn", ["sdpa", "eager", "flash_attention_2"])
def test_packing_with_an_attention_that_isolates_samples_is_quiet(attn):
    """Axolotl 0.19.0 keeps packed samples apart with sdpa and eager too (block-diagonal mask)."""
    result = validate_recipe(QLORA, f"axolotl.attn_implementation={attn}", deep=False)
    assert result.config["axolotl"]["sample_packing"] is True
    assert result.warnings == [] and result.acknowledged == []


def test_packing_with_an_attention_that_mixes_samples_is_flagged():
    """A backend outside Axolotl's packing-safe set (here fp8) lets packed samples see each
    other: a warning on the attention key, which the group's `# why:` does not silence."""
    warnings = _warnings(QLORA, "axolotl.attn_implementation=fp8")
    assert any("axolotl.attn_implementation" in w and "attend to each other" in w
               for w in warnings), warnings
    off = validate_recipe(QLORA, "axolotl.attn_implementation=fp8 axolotl.sample_packing=false "
                          "axolotl.eval_sample_packing=false", deep=False)
    assert not any(w.key == "axolotl.attn_implementation" for w in off.warnings)


def test_packing_safe_backends_are_axolotls_own():
    from axolotl.utils.schemas.config import AxolotlInputConfig

    from tunebook import axolotl_schema

    safe = axolotl_schema.packing_attention()
    assert {"sdpa", "eager", "flash_attention_2"} <= safe and "fp8" not in safe
    for attn in ("sdpa", "eager", "fp8", "flex_attention"):
        probe = AxolotlInputConfig.model_construct(attn_implementation=attn)
        assert (attn in safe) == probe.attn_decontaminates_packing, attn


def test_packed_sdpa_on_a_gpu_without_flash_kernels_needs_varlen_off():
    """Packed sdpa rows run torch's varlen FlashAttention-2 kernel unless sdpa_varlen is false:
    the T4 recipes set it false; dropping that line, or a CPU run, is told apart."""
    t4 = "qwen1.5b-lora-support"
    assert validate_recipe(t4, deep=False).config["axolotl"]["sdpa_varlen"] is False
    for override in ("~axolotl.sdpa_varlen", "axolotl.sdpa_varlen=true"):
        msg = _error(t4, override)
        assert "axolotl.sdpa_varlen" in msg and "T4" in msg and "sdpa_varlen: false" in msg
    assert validate_recipe(QLORA, "+axolotl.sdpa_varlen=true", deep=False).warnings == []
    cpu = validate_recipe(t4, "~axolotl.sdpa_varlen meta.gpu=cpu axolotl.fp16=false", deep=False)
    assert cpu.config["axolotl"]["sample_packing"] is True


def test_bf16_on_hardware_without_it():
    msg = _error("qwen1.5b-lora-support", "axolotl.bf16=true")
    assert "axolotl.bf16" in msg and "fp16" in msg


def test_chat_data_needs_a_chat_template():
    assert "chat_template" in _error(QLORA, "~axolotl.chat_template")


def test_unknown_planned_gpu():
    assert "meta.gpu" in _error(QLORA, "meta.gpu=a100-41g")


def test_schema_defaults_can_be_overridden_without_plus():
    """Gate thresholds no task file writes are still plain overrides; typos still fail."""
    cfg = validate_recipe("mistral7b-lora-triage", "data.checks.max_pii=5").config
    assert cfg["data"]["checks"]["max_pii"] == 5
    assert "did you mean 'max_pii'" in _error("mistral7b-lora-triage", "data.checks.max_pi=5")
