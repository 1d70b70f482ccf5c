"""Compose a recipe with Hydra: recipe name + overrides -> one resolved config.

A recipe is ``recipes/<name>.yaml``; its defaults list picks one option per group
(``model``, ``method``, ``task``, ``launcher``), every group file is ``@package _global_`` and
writes into the fixed top-level sections ``meta``, ``axolotl``, ``data``, ``eval`` and
``launcher``. Hydra does the composition; this module turns Hydra's exceptions into one-line
``UserError``s and records which file set each value (``make show``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, OverrideParseException
from hydra.types import RunMode
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from tunebook import families, paths, schema
from tunebook.errors import UserError, did_you_mean

SECTIONS = ("meta", "axolotl", "data", "eval", "launcher")
DEFAULT_RECIPE = "tiny-lora-triage"  # the embedded CPU default: `make train` with no RECIPE


def _twin_path(family: str) -> str:
    """``${twin:<family>}``: where the family's tiny CPU twin lives (built at train time)."""
    from tunebook import twins

    return paths.rel(twins.twin_path(str(family)))


def _cpu_attention(family: str) -> str:
    """``${cpu_attention:<family>}``: the attention a CPU computes the family with faithfully
    (SDPA drops attention soft-capping, so Gemma 2 runs eager)."""
    return families.get(str(family)).cpu_attention


# Resolvers used by recipes/profile/cpu-smoke.yaml; registered once per process.
for _name, _fn in (("twin", _twin_path), ("cpu_attention", _cpu_attention)):
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_resolver(_name, _fn)

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
OVERRIDE_SOURCE = "override"


def recipe_names(recipes_dir: Path | None = None) -> list[str]:
    """Every recipe on disk: the ``*.yaml`` files directly in ``recipes/``."""
    root = recipes_dir or paths.RECIPES
    return sorted(p.stem for p in root.glob("*.yaml"))


def group_options(group: str, recipes_dir: Path | None = None) -> list[str]:
    root = (recipes_dir or paths.RECIPES) / group
    return sorted(p.stem for p in root.glob("*.yaml") if not p.name.startswith("_"))


def check_recipe_name(name: str, recipes_dir: Path | None = None) -> None:
    """Reject paths and unknown names with the closest valid names."""
    root = recipes_dir or paths.RECIPES
    if "/" in name or "\\" in name or ".." in name or name.endswith((".yaml", ".yml")):
        stem = Path(name).stem
        hint = f"; did you mean RECIPE={stem}?" if stem in recipe_names(root) else ""
        raise UserError(
            f"RECIPE={name!r} is a path; expected a recipe name such as "
            f"'mistral7b-qlora-support' (a file in {paths.rel(root)}/){hint}"
        )
    if not _NAME.match(name) or not (root / f"{name}.yaml").is_file():
        names = recipe_names(root)
        raise UserError(
            f"unknown recipe {name!r}{did_you_mean(name, names)}; "
            f"`make list` shows all {len(names)} recipes"
        )


def parse_overrides(overrides: str | Sequence[str] | None) -> list[str]:
    """Split ``OVERRIDES="a=1 +b=2"``, check each with Hydra's own override grammar, and give a
    valid key that no file wrote the ``++`` Hydra needs (``_with_default``)."""
    return [_with_default(item) for item in split_overrides(overrides)]


def split_overrides(overrides: str | Sequence[str] | None) -> list[str]:
    """``OVERRIDES`` as the user typed them, split and checked with Hydra's override grammar."""
    if overrides is None:
        return []
    if isinstance(overrides, str):
        import shlex

        try:
            items = shlex.split(overrides)
        except ValueError as e:
            raise UserError(f"OVERRIDES={overrides!r}: {e}; quote values with spaces") from None
    else:
        items = list(overrides)
    parser = OverridesParser.create()
    for item in items:
        try:
            parser.parse_overrides([item])
        except OverrideParseException as e:
            raise UserError(
                f"bad override {item!r}: {_first_line(str(e))}; "
                "expected key=value, +new.key=value, ~key or group=option"
            ) from None
    return items


def _with_default(item: str) -> str:
    """Overrides as users type them: a key that is valid but that no file wrote gets Hydra's
    ``++`` (add or override), so no one has to know Hydra's ``+`` convention.

    Valid means a field of our sections with a default (``data.checks.max_pii=5``) or a
    top-level key of the installed Axolotl's config schema (``axolotl.max_steps=1``,
    ``tunebook.axolotl_schema.axolotl_keys``). Anything else stays as typed, so a misspelt key
    (``axolotl.lora_rr=8``) still fails in Hydra and gets the closest valid names."""
    key = item.split("=", 1)[0]
    if item[0] not in "+~" and "=" in item and (schema.has_default(key) or _axolotl_key(key)):
        return "++" + item
    return item


def as_typed(item: str) -> str:
    """An override without the ``++`` that ``_with_default`` may have added: how it compares
    with one recorded before (a run rendered by an older tunebook, a requeued job's OVERRIDES)."""
    return item[2:] if item.startswith("++") else item


def typed_line(items: Sequence[str] | None) -> str:
    """Recorded overrides as one line the way a user types them (a report, an MLflow tag)."""
    return " ".join(as_typed(item) for item in items or [])


def _axolotl_key(dotted: str) -> bool:
    """Whether ``dotted`` is ``axolotl.<key>[.<sub>...]`` with a key Axolotl's schema knows."""
    section, _, rest = dotted.partition(".")
    if section != "axolotl" or not rest:
        return False
    from tunebook.axolotl_schema import axolotl_keys  # cached index: no Axolotl import

    return rest.split(".")[0] in axolotl_keys()


@dataclass
class Composed:
    name: str
    overrides: list[str]
    config: dict[str, Any]  # resolved, plain containers
    files: list[Path] = field(default_factory=list)  # in merge order
    sources: dict[str, str] = field(default_factory=dict)  # dotted key -> file or "override"
    choices: dict[str, str] = field(default_factory=dict)  # group -> option


def compose_recipe(
    name: str,
    overrides: str | Sequence[str] | None = None,
    *,
    recipes_dir: Path | None = None,
    with_sources: bool = False,
) -> Composed:
    root = (recipes_dir or paths.RECIPES).resolve()
    check_recipe_name(name, root)
    items = parse_overrides(overrides)
    _preflight_yaml(root / f"{name}.yaml")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(root)):
            cfg = compose(config_name=name, overrides=items)
            defaults = _defaults_list(name, items) if with_sources else []
    except (HydraException, OmegaConfBaseException, yaml.YAMLError, ValueError) as e:
        raise _composition_error(name, items, e, root) from None
    finally:
        GlobalHydra.instance().clear()

    try:
        resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as e:
        raise UserError(f"recipe {name}: {_first_line(str(e))}") from None
    assert isinstance(resolved, dict)
    extra = sorted(set(resolved) - set(SECTIONS))
    if extra:
        key = extra[0]
        raise UserError(
            f"recipe {name}: unknown top-level section '{key}'{did_you_mean(key, SECTIONS)}; "
            f"sections are {', '.join(SECTIONS)}"
        )
    for section in SECTIONS:
        resolved.setdefault(section, {})

    composed = Composed(name=name, overrides=items, config=resolved)
    if with_sources:
        composed.files = [root / f"{path}.yaml" for path, _pkg in defaults]
        composed.sources = _sources(defaults, items, root)
        composed.choices = {
            path.split("/")[0]: path.split("/")[-1]
            for path, _pkg in defaults
            if "/" in path and not Path(path).name.startswith("_")
        }
    return composed


def _defaults_list(name: str, overrides: list[str]) -> list[tuple[str, str]]:
    """Hydra's own defaults list for the recipe: (config path, package) in merge order."""
    loader = GlobalHydra.instance().config_loader()
    dl = loader.compute_defaults_list(name, overrides, RunMode.RUN)
    out = []
    for d in dl.defaults:
        if d.config_path is None or d.config_path.startswith(("hydra/", "_dummy")):
            continue
        out.append((d.config_path, d.package or ""))
    return out


def _sources(defaults: list[tuple[str, str]], overrides: list[str], root: Path) -> dict[str, str]:
    sources: dict[str, str] = {}
    for path, package in defaults:
        file = root / f"{path}.yaml"
        data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        data.pop("defaults", None)
        prefix = f"{package}." if package else ""
        for key in _leaf_keys(data, prefix):
            sources[key] = paths.rel(file)
    for item in overrides:
        key = item.lstrip("+~").split("=", 1)[0]
        if "/" in key or key in paths.GROUPS:
            continue  # a group choice, already reflected in the defaults list
        for k in list(sources):
            if k == key or k.startswith(key + "."):
                sources[k] = OVERRIDE_SOURCE
        sources[key] = OVERRIDE_SOURCE
    return sources


def _leaf_keys(node: Any, prefix: str) -> Iterator[str]:
    if isinstance(node, dict) and node:
        for k, v in node.items():
            yield from _leaf_keys(v, f"{prefix}{k}.")
    else:
        yield prefix.rstrip(".")


def _preflight_yaml(file: Path) -> None:
    """Parse a YAML file ourselves so a syntax error names the file and line."""
    try:
        yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{paths.rel(file)}:{mark.line + 1}" if mark else paths.rel(file)
        problem = getattr(e, "problem", None) or _first_line(str(e))
        raise UserError(f"{where}: malformed YAML: {problem}; fix the syntax there") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{paths.rel(file)}: not UTF-8 ({e.reason}); save it as UTF-8") from None


def _composition_error(name: str, overrides: list[str], e: Exception, root: Path) -> UserError:
    msg = str(e)
    # A YAML syntax error in a group file: find it and name the line.
    for file in sorted(root.rglob("*.yaml")):
        if ".lock" in file.parts:
            continue
        try:
            _preflight_yaml(file)
        except UserError as err:
            if file.stem in msg or file.parent.name in msg or "yaml" in msg.lower():
                return err
    # Overriding a key that does not exist (without '+').
    m = re.search(r"Could not override '([^']+)'", msg)
    if m:
        key = m.group(1)
        parent, _, leaf = key.rpartition(".")
        siblings = _siblings(name, overrides, parent, root)
        if leaf in siblings:  # a valid key Hydra still refused: never suggest the input itself
            return UserError(f"override {key!r} in recipe {name}: {_first_line(msg)}; to add "
                             f"a key no file sets, write '++{key}=...'")
        hint = did_you_mean(leaf, siblings) or f"; to add a key no file sets, write '+{key}=...'"
        return UserError(f"override {key!r}: no such key in recipe {name}{hint}")
    m = re.search(r"Error merging override ([\w.-]+)=\[", msg)
    if m and _is_mapping(name, m.group(1), root):
        key = m.group(1)
        return UserError(f"override {key}=[...]: {key} is a mapping {{name: true|false}} that the "
                         f"shared files merge into; drop an entry with {key}.<name>=false, add "
                         f"one with +{key}.<name>=true")
    m = re.search(r"Could not find '([^']+)'", msg)
    if m:
        missing = m.group(1)
        group = missing.split("/")[0]
        options = group_options(group, root)
        option = missing.split("/")[-1]
        if options:
            return UserError(
                f"unknown {group} option {option!r}{did_you_mean(option, options)}; "
                f"options in recipes/{group}/: {', '.join(options)}"
            )
        return UserError(f"recipe {name}: cannot find {missing!r}: {_first_line(msg)}")
    m = re.search(r"Could not load '([^']+)'", msg)
    if m:
        return UserError(f"recipe {name}: cannot load {m.group(1)!r}: {_first_line(msg)}")
    return UserError(f"recipe {name}: {_first_line(msg)}")


def _is_mapping(name: str, dotted: str, root: Path) -> bool:
    """Whether ``dotted`` is a mapping in the recipe composed without overrides."""
    try:
        node: Any = compose_recipe(name, [], recipes_dir=root).config
    except UserError:
        return False
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return isinstance(node, dict)


def _siblings(name: str, overrides: list[str], parent: str, root: Path) -> list[str]:
    """Keys beside ``parent`` in the recipe composed without the failing overrides."""
    choices = [o for o in overrides if "=" in o and "." not in o.split("=")[0]]
    try:
        cfg = compose_recipe(name, choices, recipes_dir=root).config
    except UserError:
        return []
    node: Any = cfg
    for part in parent.split(".") if parent else []:
        node = node.get(part, {}) if isinstance(node, dict) else {}
    keys = (list(node) if isinstance(node, dict) else []) + schema.fields_at(parent)
    if parent == "axolotl":
        from tunebook.axolotl_schema import axolotl_keys

        keys = sorted(set(keys) | axolotl_keys())
    return keys


def _first_line(msg: str) -> str:
    for line in msg.strip().splitlines():
        if line.strip():
            return line.strip()
    return msg


def to_yaml(config: dict[str, Any]) -> str:
    """Deterministic YAML: sorted keys, block style, unicode kept."""
    return yaml.safe_dump(config, sort_keys=True, default_flow_style=False, allow_unicode=True,
                          width=100)
