"""The axolotl: key check reads Axolotl's installed schema and never rejects a valid config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tunebook import axolotl_schema

EXAMPLES = sorted((Path(__file__).parents[1] / "fixtures" / "axolotl-examples").glob("*.y*ml"))


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


def test_key_index_is_cached_under_a_fingerprint_and_rebuilt_when_unusable(tmp_path, monkeypatch):
    from tunebook import paths

    monkeypatch.setattr(paths, "CACHE", tmp_path)
    axolotl_schema._key_index.cache_clear()
    try:
        fresh = axolotl_schema._read_schema()
        keys = axolotl_schema.axolotl_keys()
        (index,) = (tmp_path / "axolotl-keys").glob("*.json")
        assert index.stem == axolotl_schema.fingerprint()
        assert keys == frozenset(fresh["config"])
        assert axolotl_schema.dataset_keys() == frozenset(fresh["datasets"])

        index.write_text('{"config": ["only_this"]', encoding="utf-8")  # torn or hand-edited
        axolotl_schema._key_index.cache_clear()
        assert axolotl_schema.axolotl_keys() == keys  # unreadable: read again and rewritten
        assert json.loads(index.read_text(encoding="utf-8"))["config"] == fresh["config"]

        assert axolotl_schema.packing_attention() == frozenset(fresh["packing_attention"])
        index.write_text(json.dumps({"config": ["a"], "datasets": ["b"]}), encoding="utf-8")
        axolotl_schema._key_index.cache_clear()
        assert axolotl_schema.axolotl_keys() == keys  # an index from before packing_attention
        index.write_text(json.dumps({"config": ["a"], "datasets": ["b"],
                                     "packing_attention": ["c"]}), encoding="utf-8")
        axolotl_schema._key_index.cache_clear()
        assert axolotl_schema.axolotl_keys() == {"a"}  # a hit is used as is, no import
        assert axolotl_schema.packing_attention() == {"c"}
    finally:
        axolotl_schema._key_index.cache_clear()


def test_fingerprint_follows_the_installed_schema_files(tmp_path, monkeypatch):
    import importlib.util
    import os

    schemas = tmp_path / "axolotl" / "utils" / "schemas"
    schemas.mkdir(parents=True)
    (schemas / "config.py").write_text("x = 1\n")
    spec = importlib.util.spec_from_file_location("axolotl", tmp_path / "axolotl" / "__init__.py",
                                                  submodule_search_locations=[
                                                      str(tmp_path / "axolotl")])
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: spec)
    first = axolotl_schema.fingerprint()
    assert axolotl_schema.fingerprint() == first
    (schemas / "config.py").write_text("x = 22\n")  # an edited (or upgraded) schema file
    assert axolotl_schema.fingerprint() != first
    second = axolotl_schema.fingerprint()
    os.utime(schemas / "config.py", ns=(1, 1))  # same size, another mtime: a reinstall
    assert axolotl_schema.fingerprint() != second



def test_validate_config_checks_plugin_keys_in_a_fresh_process():
    """Axolotl merges a plugin's keys into its schema only once the plugin is registered; without
    that, validate_config drops them unchecked. In a process where nothing registered Liger yet,
    run_validate_config still keeps (and checks) the liger_* keys."""
    import subprocess
    import sys

    code = ("from tunebook import axolotl_schema as a\n"
            "s = {'base_model': 'x', 'datasets': [{'path': 'd.jsonl', 'type': 'alpaca'}],\n"
            "     'micro_batch_size': 1, 'gradient_accumulation_steps': 1, 'learning_rate': 1e-4,\n"
            "     'plugins': ['axolotl.integrations.liger.LigerPlugin'], 'liger_rope': True}\n"
            "print('kept', a.run_validate_config(s, 'x').get('liger_rope'))\n"
            "s['liger_use_token_scaling'] = True  # Liger's own rule: needs the fused loss\n"
            "try:\n    a.run_validate_config(s, 'x')\n"
            "except Exception as e:\n    print('refused', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=600).stdout
    assert "kept True" in out, out
    assert "refused x: Axolotl rejects the config" in out and "fused_linear_cross_entropy" in out


def test_plugin_keys_are_indexed_beside_the_schema(tmp_path, monkeypatch):
    """Every model family loads Liger, so its keys are cached like the schema's: a hit answers
    without importing Axolotl (validate and the parent of train stay import-free)."""
    from tunebook import paths

    liger = ["axolotl.integrations.liger.LigerPlugin"]
    monkeypatch.setattr(paths, "CACHE", tmp_path)
    axolotl_schema._key_index.cache_clear()
    axolotl_schema._plugin_keys.cache_clear()
    try:
        keys = axolotl_schema.plugin_keys(liger)
        assert {"liger_rope", "liger_fused_linear_cross_entropy"} <= keys
        assert axolotl_schema.axolotl_keys() <= keys
        (index,) = (tmp_path / "axolotl-keys").glob("*-plugins-*.json")
        assert index.name.startswith(axolotl_schema.fingerprint())
        assert "liger_rope" in json.loads(index.read_text()) and "lora_r" not in index.read_text()
        index.write_text('["liger_only_in_cache"]', encoding="utf-8")
        axolotl_schema._plugin_keys.cache_clear()
        hit = axolotl_schema.plugin_keys(liger)
        assert "liger_only_in_cache" in hit and "liger_rope" not in hit  # the index was used
    finally:
        axolotl_schema._key_index.cache_clear()
        axolotl_schema._plugin_keys.cache_clear()
