"""Strict validation of a composed recipe, in three layers, before any GPU time is spent.

1. Our sections (``meta``, ``data``, ``eval``, ``launcher``) against ``tunebook.schema``:
   unknown keys fail with a did-you-mean.
2. ``axolotl:`` against Axolotl 0.19.0's own schema (field names and aliases read from the
   installed package), then Axolotl's own ``validate_config``.
3. Cross-field rules that neither schema can see (``RULES`` below), each an error or a warning.

Every problem names the key and, where known, the file that set it.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from tunebook import compose, gpus, schema
from tunebook.errors import UserError, did_you_mean


@dataclass(frozen=True)
class Finding:
    level: str  # "error" | "warning"
    key: str
    message: str

    def render(self, sources: dict[str, str]) -> str:
        where = _source_of(self.key, sources)
        prefix = f"{where}: " if where else ""
        return f"{prefix}{self.key}: {self.message}"


@dataclass
class Validated:
    composed: compose.Composed
    recipe: schema.Recipe
    warnings: list[Finding]

    @property
    def config(self) -> dict[str, Any]:
        """The effective configuration: composed values plus schema defaults, resolved."""
        return effective_config(self.recipe)


def effective_config(recipe: schema.Recipe) -> dict[str, Any]:
    out = recipe.model_dump(mode="json")
    out["axolotl"] = recipe.axolotl
    return out


def validate_recipe(name: str, overrides: str | list[str] | None = None, *,
                    axolotl: bool = True) -> Validated:
    """Compose ``name`` with ``overrides`` and run every check; raise ``UserError`` on errors."""
    composed = compose.compose_recipe(name, overrides, with_sources=True)
    return validate_composed(composed, axolotl=axolotl)


def validate_composed(composed: compose.Composed, *, axolotl: bool = True) -> Validated:
    cfg = composed.config
    errors: list[Finding] = list(_section_errors(cfg))
    recipe = None
    if not errors:
        recipe = schema.Recipe.model_validate(cfg)
    if axolotl:
        from tunebook import axolotl_schema

        errors += [Finding("error", key, msg) for key, msg in axolotl_schema.unknown_keys(cfg["axolotl"])]
    findings = [] if recipe is None else [f for rule in RULES for f in rule(recipe)]
    errors += [f for f in findings if f.level == "error"]
    where = f"recipe {composed.name}"
    if errors:
        lines = [e.render(composed.sources) for e in errors]
        raise UserError(f"{where}: {len(errors)} problem(s):\n  " + "\n  ".join(lines)
                        if len(lines) > 1 else f"{where}: {lines[0]}")
    assert recipe is not None
    if axolotl:
        from tunebook import axolotl_schema

        axolotl_schema.run_validate_config(cfg["axolotl"], where)
    return Validated(composed, recipe, [f for f in findings if f.level == "warning"])


# -- layer 1: our sections ---------------------------------------------------------------------

def _section_errors(cfg: dict[str, Any]) -> Iterator[Finding]:
    try:
        schema.Recipe.model_validate(cfg)
    except ValidationError as e:
        for err in e.errors():
            loc = tuple(err["loc"])
            key = _dotted(loc)
            if err["type"] == "extra_forbidden":
                fields = _fields_at(loc[:-1])
                yield Finding("error", key, f"unknown key{did_you_mean(str(loc[-1]), fields)}; "
                                            f"valid keys here: {', '.join(sorted(fields))}")
            elif err["type"] == "missing":
                yield Finding("error", key, "required key is missing; set it in the recipe or "
                                            "its group file")
            else:
                msg = err["msg"].removeprefix("Value error, ")
                yield Finding("error", key, f"{msg} (got {err.get('input')!r})"
                              if "input" in err and not isinstance(err["input"], dict) else msg)


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _fields_at(loc: tuple) -> list[str]:
    model: Any = schema.Recipe
    for part in loc:
        if isinstance(part, int) or not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        model = _model_of(field.annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _model_of(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):  # dict[str, Guard], Optional[...]
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _source_of(key: str, sources: dict[str, str]) -> str:
    """The file that set ``key`` or its nearest set ancestor/descendant."""
    base = key.split("[")[0]
    while base:
        if base in sources:
            return sources[base]
        for k, v in sources.items():
            if k.startswith(base + "."):
                return v
        base = base.rpartition(".")[0]
    return ""


# -- layer 3: cross-field rules ----------------------------------------------------------------

Rule = Callable[[schema.Recipe], Iterator[Finding]]
RULES: list[Rule] = []


def rule(fn: Rule) -> Rule:
    RULES.append(fn)
    return fn


@rule
def qlora_needs_4bit(r: schema.Recipe) -> Iterator[Finding]:
    """QLoRA is LoRA on a 4-bit base: both halves must be set, or the run is silently LoRA."""
    ax = r.axolotl
    if r.meta.method.kind == "qlora" or ax.get("adapter") == "qlora":
        if ax.get("adapter") != "qlora":
            yield Finding("error", "axolotl.adapter", f"method {r.meta.method.name} is QLoRA, "
                          f"expected adapter: qlora (got {ax.get('adapter')!r})")
        if not ax.get("load_in_4bit"):
            yield Finding("error", "axolotl.load_in_4bit", "QLoRA needs load_in_4bit: true; "
                          "without it the base loads in 16-bit and the plan is wrong")


@rule
def learning_rate_in_range(r: schema.Recipe) -> Iterator[Finding]:
    lr = r.axolotl.get("learning_rate")
    lo, hi = r.meta.method.learning_rate_range
    if lr is not None and not lo <= float(lr) <= hi:
        yield Finding("warning", "axolotl.learning_rate",
                      f"{lr} is outside the recommended range for {r.meta.method.name} "
                      f"({lo:g}-{hi:g}); keep it only with a `# why`")


@rule
def dpo_needs_preference_data(r: schema.Recipe) -> Iterator[Finding]:
    rl = r.axolotl.get("rl")
    if rl and r.data.format != "preference":
        yield Finding("error", "data.format", f"axolotl.rl: {rl} trains on preference pairs; "
                      f"data.format is {r.data.format!r}: pick a preference task "
                      "(e.g. task=support-pref)")
    if r.data.format == "preference" and not rl:
        yield Finding("error", "axolotl.rl", "preference data needs a preference method "
                      "(e.g. method=dpo-lora); supervised training would ignore 'rejected'")


@rule
def sequence_fits_model(r: schema.Recipe) -> Iterator[Finding]:
    seq = r.axolotl.get("sequence_len")
    if seq is not None and int(seq) > r.meta.model.max_positions:
        yield Finding("error", "axolotl.sequence_len", f"{seq} exceeds {r.meta.model.name}'s "
                      f"{r.meta.model.max_positions} positions; lower it")


@rule
def hardware_supports_kernels(r: schema.Recipe) -> Iterator[Finding]:
    """FlashAttention-2 and bf16 need Ampere or newer; packing without FA2 cross-contaminates."""
    gpu = gpus.table().get(r.meta.gpu)
    if gpu is None:
        yield Finding("error", "meta.gpu", f"unknown GPU {r.meta.gpu!r}"
                      f"{did_you_mean(r.meta.gpu, gpus.table())}; see recipes/hardware/gpus.yaml")
        return
    ax = r.axolotl
    fa2 = ax.get("attn_implementation") == "flash_attention_2" or ax.get("flash_attention")
    if fa2 and not gpu.flash_attention:
        yield Finding("error", "axolotl.attn_implementation",
                      f"FlashAttention-2 does not run on {gpu.name} ({gpu.id}); "
                      "use attn_implementation: sdpa")
    if ax.get("sample_packing") and not fa2:
        yield Finding("warning", "axolotl.sample_packing",
                      "packing without FlashAttention-2 lets packed samples attend to each "
                      "other on GPU; set attn_implementation: flash_attention_2")
    if ax.get("bf16") is True and not gpu.bf16:
        yield Finding("error", "axolotl.bf16", f"{gpu.name} has no bf16; use bf16: false, fp16: true")


@rule
def chat_data_needs_template(r: schema.Recipe) -> Iterator[Finding]:
    if r.data.format in ("chat", "preference"):
        per_dataset = all(d.get("chat_template") for d in r.axolotl.get("datasets") or [{}])
        if not r.axolotl.get("chat_template") and not per_dataset:
            yield Finding("error", "axolotl.chat_template", f"{r.data.format} data is rendered "
                          "with a chat template; set chat_template (e.g. tokenizer_default)")


# -- CLI ---------------------------------------------------------------------------------------

def register(sub: argparse._SubParsersAction) -> None:
    from tunebook.cli import add_recipe_args

    p = sub.add_parser("validate", help="compose and strictly validate one recipe or all")
    add_recipe_args(p, default=None)
    p.add_argument("--all", action="store_true", help="validate every recipe in recipes/")
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    names = compose.recipe_names() if args.all or not args.recipe else [args.recipe]
    t0 = time.perf_counter()
    for name in names:
        result = validate_recipe(name, args.overrides)
        for w in result.warnings:
            print(f"warning: {w.render(result.composed.sources)}", file=sys.stderr)
        print(f"ok  {name}")
    print(f"{len(names)} recipe(s) valid in {time.perf_counter() - t0:.1f} s")
    return 0
