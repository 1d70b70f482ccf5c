"""What Axolotl 0.19.0 itself accepts, read from the installed package (never a hand-kept list).

Axolotl's pydantic models silently drop unknown keys (``lora_rr: 8`` vanishes), so tunebook
checks the ``axolotl:`` section against the models' field names and aliases first, then runs
Axolotl's own ``validate_config``. Importing Axolotl costs ~6 s, so it happens lazily, once.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Iterator
from typing import Any

from tunebook.errors import UserError, did_you_mean

# Keys whose list entries are dataset configs, checked against Axolotl's dataset models.
DATASET_LISTS = ("datasets", "test_datasets")


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


@functools.cache
def axolotl_keys() -> frozenset[str]:
    """Top-level keys Axolotl's config schema knows: field names and their aliases."""
    return frozenset(_names(_models()["config"]))


@functools.cache
def dataset_keys() -> frozenset[str]:
    """Keys of one entry of ``datasets:`` / ``test_datasets:`` (SFT, DPO or KTO shape)."""
    keys: set[str] = set()
    for model in _models()["datasets"]:
        keys |= _names(model)
    return frozenset(keys)


def plugin_keys(plugins: list[str]) -> frozenset[str]:
    """Keys that ``plugins:`` add to the schema (Liger, cut cross-entropy, ...)."""
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


def run_validate_config(section: dict[str, Any], where: str) -> dict[str, Any]:
    """Axolotl's own ``validate_config``; its errors become one ``UserError`` naming the keys."""
    from pydantic import ValidationError

    _models()
    from axolotl.utils.config import validate_config
    from axolotl.utils.dict import DictDefault

    try:
        return dict(validate_config(DictDefault(_plain(section))))
    except ValidationError as e:
        parts = []
        for err in e.errors():
            loc = ".".join(str(x) for x in err.get("loc", ()) if x != "__root__")
            msg = err.get("msg", "").removeprefix("Value error, ")
            parts.append(f"axolotl.{loc}: {msg}" if loc else msg)
        raise UserError(f"{where}: Axolotl rejects the config: " + "; ".join(parts)) from None
    except (ValueError, TypeError) as e:
        raise UserError(f"{where}: Axolotl rejects the config: {e}") from None


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
