"""The axolotl: key check reads Axolotl's installed schema and never rejects a valid config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tunebook import axolotl_schema

EXAMPLES = sorted((Path(__file__).parent / "fixtures" / "axolotl-examples").glob("*.y*ml"))


def test_schema_is_read_from_the_installed_package():
    keys = axolotl_schema.axolotl_keys()
    assert len(keys) > 300
    assert {"lora_r", "load_in_4bit", "datasets", "deepspeed", "fsdp_config", "rl"} <= keys
    assert "lora_rr" not in keys
    assert {"field_messages", "roles_to_train", "field_chosen"} <= axolotl_schema.dataset_keys()


def test_no_false_positives_on_axolotls_own_examples():
    """Every key flagged in Axolotl's examples is one that validate_config drops silently."""
    assert len(EXAMPLES) >= 50
    flagged_total = 0
    for file in EXAMPLES:
        config = yaml.safe_load(file.read_text())
        flagged = [k for k, _ in axolotl_schema.unknown_keys(config)]
        if not flagged:
            continue
        kept = axolotl_schema.run_validate_config(config, file.name)
        for key in flagged:
            top = key.removeprefix("axolotl.").split(".")[0].split("[")[0]
            if "[" in key:  # a dataset entry key: it must be gone from that entry
                list_key, rest = top, key.split("].", 1)[1]
                index = int(key.split("[")[1].split("]")[0])
                entry = kept[list_key][index]
                entry = entry if isinstance(entry, dict) else entry.model_dump()
                assert entry.get(rest) is None, f"{file.name}: {key} is kept by Axolotl"
            else:
                assert top not in kept, f"{file.name}: {key} is kept by Axolotl"
            flagged_total += 1
    # Axolotl's examples do carry dead keys (e.g. the typo context_parapllel_size).
    assert flagged_total >= 1


@pytest.mark.parametrize("typo,expected", [("lora_rr", "lora_r"), ("micro_bach_size",
                         "micro_batch_size"), ("sequense_len", "sequence_len")])
def test_typos_are_caught_with_the_closest_key(typo, expected):
    (key, message), = axolotl_schema.unknown_keys({typo: 1})
    assert key == f"axolotl.{typo}" and f"'{expected}'" in message
