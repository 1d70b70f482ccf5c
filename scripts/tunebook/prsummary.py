"""What a recipe pull request changes, as Markdown for its reviewer (``make pr-summary REF=``).

For every recipe whose *effective* configuration (the one ``make lock`` snapshots: composed
values plus schema defaults) differs between the git ref ``REF`` and the work tree, the summary
lists whether it was added, removed or changed; each changed key with its old and new value and
the file that set the new one (the composer's sources, as ``make show`` prints them); the
planner's peak memory, hours and cost before and after on the recipe's planned GPU
(``meta.gpu``, each side its own); ``validate``'s verdict on the new version; and whether
``lock-check`` passes. Unchanged recipes are not listed; when nothing changed it is one line.

Both sides' hours and cost count the tokens of the work tree's data files: the figures differ
only by what the recipe change does. ``REF``'s recipes are read with ``git archive`` (as
``make diff`` does). Functions here return data or text; the command wiring prints it.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunebook import compose, lock, schema
from tunebook.errors import UserError
from tunebook.validate import effective_config, validate_recipe

ABSENT = object()  # a key one side does not have
SCHEMA_DEFAULT = "schema default"  # the source of a value no file set
CELL_CHARS = 80  # longer values are cut in the tables (the lock snapshot has them whole)


@dataclass
class KeyChange:
    key: str
    old: Any
    new: Any
    source: str | None  # the file that set the new value; None when the key was removed


@dataclass
class Figures:
    """The planner's figures for one side of one recipe (``error`` when it could not plan)."""

    gpu: str | None = None
    gpus: int = 0
    peak_gb: float | None = None
    fits: bool | None = None
    hours: float | None = None
    cost_usd: float | None = None
    error: str | None = None


@dataclass
class RecipeChange:
    name: str
    status: str  # added | removed | changed
    keys: list[KeyChange] = field(default_factory=list)
    before: Figures | None = None
    after: Figures | None = None
    valid: bool = True
    validation: str = ""  # "passes", "passes with 1 warning", or the error message
    warnings: list[str] = field(default_factory=list)


@dataclass
class Summary:
    ref: str
    recipes: list[RecipeChange]
    lock_ok: bool
    lock_detail: str


@dataclass
class _Side:
    composed: compose.Composed | None = None
    effective: dict[str, Any] | None = None
    error: str | None = None


def _side(name: str, recipes_dir: Path | None) -> _Side:
    try:
        composed = compose.compose_recipe(name, recipes_dir=recipes_dir)
    except UserError as e:
        return _Side(error=str(e))
    try:
        recipe = schema.Recipe.model_validate(composed.config)
    except ValueError as e:
        return _Side(composed, error=f"recipe {name} does not validate: {str(e).splitlines()[0]}")
    return _Side(composed, effective_config(recipe))


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"axolotl.lora_r": 16, ...}``; lists are values, not branches."""
    if isinstance(node, dict) and node:
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): node}


def _source(key: str, sources: dict[str, str]) -> str:
    """The file that set ``key``, or of the nearest enclosing key a file set as a whole."""
    parts = key.split(".")
    for i in range(len(parts), 0, -1):
        found = sources.get(".".join(parts[:i]))
        if found:
            return "OVERRIDES" if found == compose.OVERRIDE_SOURCE else found
    return SCHEMA_DEFAULT


def key_changes(old: dict[str, Any], new: dict[str, Any],
                sources: dict[str, str]) -> list[KeyChange]:
    """Every leaf key whose value differs between two effective configs, sorted by key."""
    a, b = _flatten(old), _flatten(new)
    out = []
    for key in sorted(set(a) | set(b)):
        before, after = a.get(key, ABSENT), b.get(key, ABSENT)
        if before != after:
            out.append(KeyChange(key, before, after,
                                 None if after is ABSENT else _source(key, sources)))
    return out


def figures(config: dict[str, Any]) -> Figures:
    """Peak memory, hours and cost of a composed recipe on its ``meta.gpu`` (``make plan``)."""
    from tunebook.plan.estimate import estimate

    gpu = (config.get("meta") or {}).get("gpu")
    if not gpu:
        return Figures(error="meta.gpu is not set")
    try:
        p = estimate(config, str(gpu), count=True, suggest=False)
    except UserError as e:
        return Figures(gpu=str(gpu), error=str(e))
    t = p.time
    return Figures(gpu=p.gpu, gpus=p.gpus, peak_gb=p.peak_gb, fits=p.fits,
                   hours=t.hours if t else None, cost_usd=t.cost_usd if t else None)


def _validation(name: str) -> tuple[bool, str, list[str], dict[str, str]]:
    """``validate``'s verdict on the work tree's ``name``: (passes, verdict, warnings, the
    composer's sources of its values)."""
    try:
        result = validate_recipe(name)
    except UserError as e:
        try:
            sources = compose.compose_recipe(name, with_sources=True).sources
        except UserError:
            sources = {}
        return False, str(e), [], sources
    warnings = [w.render(result.composed.sources) for w in result.warnings]
    n = len(warnings)
    verdict = "passes" + (f" with {n} warning{'s' * (n != 1)}" if n else "")
    return True, verdict, warnings, result.composed.sources


def _lock_check() -> tuple[bool, str]:
    try:
        stale = lock.stale()
    except UserError as e:
        return False, f"fails: {e}"
    if not stale:
        return True, "passes"
    names = ", ".join(f"`{n}`" for n in stale)
    return False, (f"fails: {len(stale)} stale snapshot(s) in recipes/.lock/ ({names}); "
                   "run `make lock` and commit recipes/.lock/")


def _compare(ref: str) -> list[tuple[str, str, _Side, _Side]]:
    """``(name, status, old side, new side)`` of every recipe whose effective config changed."""
    with tempfile.TemporaryDirectory(prefix="tunebook-ref-") as tmp:
        old_dir = lock._extract_recipes(ref, Path(tmp))
        old_names, new_names = set(compose.recipe_names(old_dir)), set(compose.recipe_names())
        out = []
        for name in sorted(old_names | new_names):
            old = _side(name, old_dir) if name in old_names else None
            new = _side(name, None) if name in new_names else None
            if old is None or new is None:
                out.append((name, "added" if old is None else "removed", old or _Side(),
                            new or _Side()))
            elif old.effective != new.effective or (old.error is None) != (new.error is None):
                out.append((name, "changed", old, new))
        return out


def changed_recipes(ref: str) -> list[str]:
    """The recipes added or changed since ``ref`` (those a pull request's CI smoke-trains)."""
    return [name for name, status, _old, _new in _compare(ref) if status != "removed"]


def summarize(ref: str) -> Summary:
    recipes = []
    for name, status, old, new in _compare(ref):
        change = RecipeChange(name, status)
        if old.composed is not None:
            change.before = figures(old.composed.config)
        if status != "removed":
            change.valid, change.validation, change.warnings, sources = _validation(name)
            if new.composed is not None:
                change.after = figures(new.composed.config)
            if status == "changed":
                change.keys = key_changes(old.effective or {}, new.effective or {}, sources)
        recipes.append(change)
    lock_ok, lock_detail = _lock_check()
    return Summary(ref, recipes, lock_ok, lock_detail)


# -- Markdown ----------------------------------------------------------------------------------

def _value(value: Any) -> str:
    if value is ABSENT:
        return "(absent)"
    text = json.dumps(value) if isinstance(value, dict | list | bool) or value is None \
        else str(value)
    if len(text) > CELL_CHARS:
        text = text[:CELL_CHARS - 1] + "…"
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`"


def _gib(f: Figures | None) -> str:
    if f is None:
        return "—"
    if f.error:
        return f"not planned: {f.error.splitlines()[0]}"
    fits = "fits" if f.fits else "**does not fit**"
    return f"{f.peak_gb:.1f} GiB ({fits})"


def _hours(f: Figures | None) -> str:
    if f is None or f.error or f.hours is None:
        return "—"
    return f"{f.hours:.2f} h" if f.hours >= 1 else f"{f.hours * 60:.1f} min"


def _cost(f: Figures | None) -> str:
    return "—" if f is None or f.error or f.cost_usd is None else f"${f.cost_usd:,.2f}"


def _gpu(f: Figures | None) -> str:
    if f is None or not f.gpu:
        return "—"
    return f"`{f.gpu}`" if f.error else f"{f.gpus} x `{f.gpu}`"


def _recipe_markdown(r: RecipeChange) -> list[str]:
    lines = [f"### `{r.name}` ({r.status})", ""]
    if r.status == "added":
        lines += [f"A new recipe: `make show RECIPE={r.name}` lists every value and the file "
                  "that set it.", ""]
    elif r.status == "removed":
        lines += ["The recipe file is gone.", ""]
    if r.keys:
        lines += ["| key | old | new | set by |", "|---|---|---|---|"]
        lines += [f"| `{k.key}` | {_value(k.old)} | {_value(k.new)} | "
                  f"{'—' if k.source is None else '`' + k.source + '`'} |" for k in r.keys]
        lines.append("")
    elif r.status == "changed":
        lines += ["The recipe does not compose on one side; see validate below.", ""]
    lines += ["| planner (meta.gpu) | before | after |", "|---|---|---|",
              f"| GPU | {_gpu(r.before)} | {_gpu(r.after)} |",
              f"| peak memory | {_gib(r.before)} | {_gib(r.after)} |",
              f"| time | {_hours(r.before)} | {_hours(r.after)} |",
              f"| cost | {_cost(r.before)} | {_cost(r.after)} |", ""]
    if r.status != "removed":
        if r.valid:
            lines.append(f"validate: {r.validation}")
            lines += [f"- {w}" for w in r.warnings]
        else:
            lines += ["validate: **fails**", "", "```", r.validation, "```"]
        lines.append("")
    return lines


def markdown(summary: Summary) -> str:
    lock_line = f"lock-check: {summary.lock_detail}"
    if not summary.recipes:
        return (f"No recipe changed its resolved config since `{summary.ref}`; "
                f"{lock_line}.\n")
    counts: dict[str, int] = {}
    for r in summary.recipes:
        counts[r.status] = counts.get(r.status, 0) + 1
    what = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    lines = [f"## Recipes changed since `{summary.ref}`", "",
             f"{len(summary.recipes)} recipe(s) changed their resolved config ({what}). "
             f"{lock_line}.", "",
             "Planner: peak memory, training time and cost on the recipe's planned GPU "
             "(`make plan`), counting the work tree's data on both sides.", ""]
    for r in summary.recipes:
        lines += _recipe_markdown(r)
    return "\n".join(lines).rstrip("\n") + "\n"
