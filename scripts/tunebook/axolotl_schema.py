"""What Axolotl 0.19.0 itself accepts, read from the installed package (never a hand-kept list).

Axolotl's pydantic models silently drop unknown keys (``lora_rr: 8`` vanishes), so tunebook
checks the ``axolotl:`` section against the models' field names and aliases first, then runs
Axolotl's own ``validate_config``.

Importing Axolotl costs 4-7 s, which ``tunebook train`` should not pay twice (its training
process imports Axolotl anyway). So the key sets (and the attention backends that keep packed
samples apart, for ``tunebook.validate``) are cached in ``.cache/axolotl-keys/``, under a
fingerprint of the installed Axolotl (its version and the size and mtime of every file of its
``utils/schemas`` package) and of this module: an upgraded, edited or reinstalled Axolotl gets a
fresh index, a cache hit never imports Axolotl. ``run_validate_config`` always needs the import.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tunebook import paths
from tunebook.errors import UserError, did_you_mean

# Keys whose list entries are dataset configs, checked against Axolotl's dataset models.
DATASET_LISTS = ("datasets", "test_datasets")
# What the cached index holds: config keys, dataset-entry keys, packing-safe attention backends.
INDEX_KEYS = ("config", "datasets", "packing_attention")


def _names(model: type) -> set[str]:
    names: set[str] = set()
    for name, info in model.model_fields.items():
        names.add(name)
        if info.alias:
            names.add(info.alias)
        alias = info.validation_alias
        if isinstance(alias, str):
            names.add(alias)
        elif alias is not None and hasattr(alias, "choices"):  # AliasChoices
            names.update(c for c in alias.choices if isinstance(c, str))
    return names


@contextlib.contextmanager
def quiet_import() -> Iterator[None]:
    """Import Axolotl without its torch/torchao start-up warnings, which are not the user's."""
    os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


@functools.cache
def _models() -> dict[str, Any]:
    with quiet_import():
        from axolotl.utils.config import validate_config  # noqa: F401  (warm the heavy import)
        from axolotl.utils.schemas.config import AxolotlInputConfig

    fields = AxolotlInputConfig.model_fields
    entry_models = set()
    for key in DATASET_LISTS:
        entry_models |= _models_in(fields[key].annotation)
    return {"config": AxolotlInputConfig, "datasets": tuple(entry_models)}


def _models_in(annotation: Any) -> set[type]:
    """Every pydantic model inside a type annotation (unions, lists, Annotated...)."""
    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {annotation}
    found: set[type] = set()
    for arg in getattr(annotation, "__args__", ()) or ():
        found |= _models_in(arg)
    return found


def _read_schema() -> dict[str, list[str]]:
    """Both key sets and the packing-safe attention backends, read from the imported schema."""
    from axolotl.utils.schemas import enums

    dataset: set[str] = set()
    for model in _models()["datasets"]:
        dataset |= _names(model)
    config = _models()["config"]
    # Axolotl's own ``attn_decontaminates_packing``, asked for every backend it names.
    backends = enums.CANONICAL_ATTN_IMPLS | enums.ATTN_IMPLS_SUPPORTING_PACKING
    packing = sorted(a for a in backends
                     if config.model_construct(attn_implementation=a).attn_decontaminates_packing)
    return {"config": sorted(_names(config)), "datasets": sorted(dataset),
            "packing_attention": packing}


def fingerprint() -> str:
    """Identifies the installed schema without importing Axolotl (a few ms of ``stat``)."""
    spec = importlib.util.find_spec("axolotl")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("Axolotl is not installed in this environment; run `make setup`")
    schemas = Path(next(iter(spec.submodule_search_locations))) / "utils" / "schemas"
    h = hashlib.sha256(importlib.metadata.version("axolotl").encode())
    h.update(Path(__file__).read_bytes())  # how the keys are read is part of the index
    for f in sorted(schemas.rglob("*.py")):
        st = f.stat()
        h.update(f"{f.relative_to(schemas)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


@functools.cache
def _key_index() -> dict[str, frozenset[str]]:
    cache = paths.CACHE / "axolotl-keys" / f"{fingerprint()}.json"
    try:
        data = json.loads(cache.read_text(encoding="utf-8"))
        return {key: frozenset(data[key]) for key in INDEX_KEYS}
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no index yet, or an unreadable one: read the schema and keep it
    data = _read_schema()
    with contextlib.suppress(OSError):
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=0) + "\n", encoding="utf-8")
        tmp.replace(cache)  # atomic: a concurrent reader sees all of it or nothing
    return {key: frozenset(values) for key, values in data.items()}


def axolotl_keys() -> frozenset[str]:
    """Top-level keys Axolotl's config schema knows: field names and their aliases."""
    return _key_index()["config"]


def dataset_keys() -> frozenset[str]:
    """Keys of one entry of ``datasets:`` / ``test_datasets:`` (SFT, DPO or KTO shape)."""
    return _key_index()["datasets"]


def packing_attention() -> frozenset[str]:
    """``attn_implementation`` values with which Axolotl keeps packed samples apart (its
    ``attn_decontaminates_packing``: varlen backends, and sdpa/eager through a block-diagonal
    mask); with any other backend packed samples attend to each other."""
    return _key_index()["packing_attention"]


def plugin_keys(plugins: list[str]) -> frozenset[str]:
    """Keys that ``plugins:`` add to the schema (Liger, cut cross-entropy, ...).

    Axolotl's own plugins (``axolotl.integrations.*``) are indexed like the schema, in
    ``.cache/axolotl-keys/``, under the schema fingerprint plus one of the ``integrations``
    package and the plugin list: every tunebook model family loads Liger, and a cache hit keeps
    ``validate`` and the parent of ``train`` free of the Axolotl import."""
    return _plugin_keys(tuple(plugins))


@functools.cache
def _plugin_keys(plugins: tuple[str, ...]) -> frozenset[str]:
    if not all(p.startswith("axolotl.integrations.") for p in plugins):
        return _read_plugin_keys(list(plugins))  # another package's plugin: ask it every time
    spec = importlib.util.find_spec("axolotl")
    assert spec is not None and spec.submodule_search_locations  # fingerprint() checked it
    integrations = Path(next(iter(spec.submodule_search_locations))) / "integrations"
    h = hashlib.sha256("\n".join(plugins).encode())
    for f in sorted(integrations.rglob("*.py")):
        st = f.stat()
        h.update(f"{f.relative_to(integrations)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    cache = paths.CACHE / "axolotl-keys" / f"{fingerprint()}-plugins-{h.hexdigest()[:16]}.json"
    try:
        return axolotl_keys() | frozenset(json.loads(cache.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        pass  # not indexed yet, or unreadable: ask Axolotl and keep the answer
    keys = _read_plugin_keys(list(plugins))
    with contextlib.suppress(OSError):
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(sorted(keys - axolotl_keys()), indent=0) + "\n",
                       encoding="utf-8")
        tmp.replace(cache)
    return keys


def _read_plugin_keys(plugins: list[str]) -> frozenset[str]:
    from axolotl.integrations.config import merge_input_args
    from axolotl.utils.config import prepare_plugins
    from axolotl.utils.dict import DictDefault

    try:
        with quiet_import():
            prepare_plugins(DictDefault({"plugins": plugins}))
            _caps, merged = merge_input_args()
    except Exception as e:  # a plugin whose package is missing fails deep inside Axolotl
        raise UserError(f"axolotl.plugins: cannot load {plugins}: {e}; install the plugin's "
                        "package or remove it from plugins") from None
    return frozenset(_names(merged))


def unknown_keys(section: dict[str, Any]) -> list[tuple[str, str]]:
    """``(dotted key, message)`` for every key Axolotl would drop silently."""
    known = set(axolotl_keys())
    if section.get("plugins"):
        known |= plugin_keys(list(section["plugins"]))
    problems = []
    for key in section:
        if key not in known:
            problems.append((f"axolotl.{key}",
                             f"not an Axolotl 0.19.0 option{did_you_mean(key, known)}"))
    ds_known = dataset_keys()
    for list_key in DATASET_LISTS:
        for i, entry in enumerate(section.get(list_key) or []):
            if not isinstance(entry, dict):
                continue
            for key in entry:
                if key not in ds_known:
                    problems.append(
                        (f"axolotl.{list_key}[{i}].{key}",
                         f"not an Axolotl dataset option{did_you_mean(key, ds_known)}")
                    )
    return problems


REJECTED = "Axolotl rejects the config: "


def rejection(error: Exception) -> str | None:
    """What ``validate_config`` objected to, one line naming the keys; ``None`` if ``error`` is
    not a rejection of the config (a bug or an environment problem is not the user's config)."""
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        parts = []
        for err in error.errors():
            loc = ".".join(str(x) for x in err.get("loc", ()) if x != "__root__")
            msg = err.get("msg", "").removeprefix("Value error, ")
            parts.append(f"axolotl.{loc}: {msg}" if loc else msg)
        return REJECTED + "; ".join(parts)
    if isinstance(error, ValueError | TypeError):
        return f"{REJECTED}{error}"
    return None


def run_validate_config(section: dict[str, Any], where: str,
                        capabilities: dict[str, Any] | None = None,
                        env_capabilities: dict[str, Any] | None = None) -> dict[str, Any]:
    """Axolotl's own ``validate_config``; its errors become one ``UserError`` naming the keys.
    Plugins are registered first, as Axolotl's own config loader does: without that their keys
    (``liger_*``, ...) would be dropped unchecked. ``capabilities`` (a GPU's, as Axolotl's
    ``gpu_capabilities()`` reports them) turn on the checks that depend on the device."""
    _models()
    from axolotl.utils.config import prepare_plugins, validate_config
    from axolotl.utils.dict import DictDefault

    try:
        if section.get("plugins"):
            prepare_plugins(DictDefault(_plain(section)))
        return dict(validate_config(DictDefault(_plain(section)), capabilities=capabilities,
                                    env_capabilities=env_capabilities))
    except Exception as e:
        message = rejection(e)
        if message is None:
            raise
        raise UserError(f"{where}: {message}") from None


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
