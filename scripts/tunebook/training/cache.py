"""The content-hash cache of tokenized data: ``.cache/prepared/<hash>``.

Axolotl's own prepared-dataset key ignores file *contents*: an edited JSONL at the same path
would silently reuse stale tokenized data. tunebook sets ``dataset_prepared_path`` to a directory
named by a hash over the data files' contents, the tokenizer files and every Axolotl key that
shapes tokenization, so an edited dataset always tokenizes afresh.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tunebook import paths

# Axolotl keys that change the tokenized dataset (beside file and tokenizer contents).
DATA_KEYS = ("datasets", "test_datasets", "sequence_len", "chat_template", "chat_template_jinja",
             "tokenizer_config", "tokenizer_type", "tokenizer_use_fast", "special_tokens",
             "tokens", "train_on_inputs", "sample_packing", "rl", "val_set_size",
             "default_system_message", "eot_tokens", "train_on_eos", "roles_to_train",
             "excess_length_strategy", "min_sample_len", "dataset_shard_num",
             "dataset_shard_idx", "seed")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "chat_template.jinja", "tokenizer.model", "vocab.json", "merges.txt")


def prepared_path(axolotl: dict[str, Any]) -> Path:
    """``.cache/prepared/<hash>``: data file contents + tokenizer files + tokenization keys."""
    h = hashlib.sha256()
    keys = {k: axolotl.get(k) for k in DATA_KEYS if k in axolotl}
    h.update(json.dumps(keys, sort_keys=True, default=str).encode())
    for list_key in ("datasets", "test_datasets"):
        for entry in axolotl.get(list_key) or []:
            path = Path(str(entry.get("path", "")))
            path = path if path.is_absolute() else paths.ROOT / path
            files = sorted(path.rglob("*")) if path.is_dir() else [path]
            for f in files:
                if f.is_file():
                    h.update(f.name.encode())
                    h.update(bytes.fromhex(paths.sha256(f)))
    base = str(axolotl.get("tokenizer_config") or axolotl.get("base_model") or "")
    base_dir = Path(base) if Path(base).is_absolute() else paths.ROOT / base
    h.update(base.encode() if not base_dir.is_dir() else b"")
    if base_dir.is_dir():
        for name in TOKENIZER_FILES:
            f = base_dir / name
            if f.is_file():
                h.update(name.encode())
                h.update(bytes.fromhex(paths.sha256(f)))
    return paths.CACHE / "prepared" / h.hexdigest()[:16]

