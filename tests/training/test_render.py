"""Rendering: secrets never reach run files; settings that merely mention tokens stay."""

from __future__ import annotations

from tunebook.redaction import REDACTED, redact


def test_credentials_are_redacted_settings_are_kept():
    config = {"axolotl": {"hub_token": "hf_abcdefghijkl", "wandb_api_key": "k",
                          "tokenizer_type": "PreTrainedTokenizerFast"},
              "eval": {"max_new_tokens": 8}, "env": {"HF_TOKEN": "x"}}
    out = redact(config)
    assert out["axolotl"]["hub_token"] == REDACTED
    assert out["axolotl"]["wandb_api_key"] == REDACTED
    assert out["env"]["HF_TOKEN"] == REDACTED
    assert out["axolotl"]["tokenizer_type"] == "PreTrainedTokenizerFast"
    assert out["eval"]["max_new_tokens"] == 8


def test_override_strings_are_redacted_piecewise():
    line = "eval.max_new_tokens=16 +axolotl.hub_token=hf_secretsecret axolotl.lora_r=8"
    assert redact(line) == f"eval.max_new_tokens=16 +axolotl.hub_token={REDACTED} axolotl.lora_r=8"
    assert "hf_" not in redact("pushed with hf_abcdefghijklmnop")
