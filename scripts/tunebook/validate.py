"""Strict validation of a composed recipe, in three layers, before any GPU time is spent.

1. Our sections (``meta``, ``data``, ``eval``, ``launcher``) against ``tunebook.schema``:
   unknown keys fail with a did-you-mean.
2. ``axolotl:`` against Axolotl 0.19.0's own schema (field names and aliases read from the
   installed package, cached per installed version), then Axolotl's own ``validate_config``.
   ``deep=False`` leaves out ``validate_config``, the one part that must import Axolotl:
   ``tunebook train`` runs it in the training process, which imports Axolotl anyway.
3. Cross-field rules that neither schema can see (``RULES`` below), each an error or a warning.

Every problem names the key and, where known, the file that set it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from tunebook import compose, families, gpus, paths, schema
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
    # Warnings about a value whose line in its recipe or group file carries a ``# why:`` comment:
    # read and answered, so ``train`` stays quiet about them; ``validate`` still lists them.
    acknowledged: list[Finding] = field(default_factory=list)

    @property
    def config(self) -> dict[str, Any]:
        """The effective configuration: composed values plus schema defaults, resolved."""
        return effective_config(self.recipe)


def effective_config(recipe: schema.Recipe) -> dict[str, Any]:
    out = recipe.model_dump(mode="json")
    out["axolotl"] = recipe.axolotl
    return out


def validate_recipe(name: str, overrides: str | list[str] | None = None, *,
                    axolotl: bool = True, deep: bool = True) -> Validated:
    """Compose ``name`` with ``overrides`` and run every check; raise ``UserError`` on errors.

    ``axolotl=False`` skips layer 2; ``deep=False`` skips only Axolotl's ``validate_config``."""
    composed = compose.compose_recipe(name, overrides, with_sources=True)
    return validate_composed(composed, axolotl=axolotl, deep=deep)


def validate_composed(composed: compose.Composed, *, axolotl: bool = True,
                      deep: bool = True) -> Validated:
    cfg = composed.config
    errors: list[Finding] = list(_section_errors(cfg))
    recipe = None
    if not errors:
        recipe = schema.Recipe.model_validate(cfg)
    if axolotl:
        from tunebook import axolotl_schema

        unknown = axolotl_schema.unknown_keys(cfg["axolotl"])
        errors += [Finding("error", key, msg) for key, msg in unknown]
    findings = [] if recipe is None else [f for rule in RULES for f in rule(recipe)]
    errors += [f for f in findings if f.level == "error"]
    where = f"recipe {composed.name}"
    if errors:
        lines = [e.render(composed.sources) for e in errors]
        raise UserError(f"{where}: {len(errors)} problem(s):\n  " + "\n  ".join(lines)
                        if len(lines) > 1 else f"{where}: {lines[0]}")
    assert recipe is not None
    if axolotl and deep:
        from tunebook import axolotl_schema

        axolotl_schema.run_validate_config(cfg["axolotl"], where)
    warnings = [f for f in findings if f.level == "warning"]
    recipe_file = paths.RECIPES / f"{composed.name}.yaml"
    answered = [w for w in warnings if _has_why(w.key, composed.sources, recipe_file)]
    return Validated(composed, recipe, [w for w in warnings if w not in answered], answered)


def _has_why(key: str, sources: dict[str, str], recipe_file: Path | None = None) -> bool:
    """Whether the line that sets ``key`` in its file carries a ``# why:`` comment (an override
    on the command line never does). The line is found by the key's last name; a choice of the
    recipe's defaults list (``defaults.method``) by its ``- method: ...`` line in the recipe."""
    if key.startswith("defaults.") and recipe_file is not None and recipe_file.is_file():
        group = re.escape(key.split(".", 1)[1])
        line = re.compile(rf"^\s*-\s*{group}\s*:.*#\s*why:")
        return any(line.match(x) for x in recipe_file.read_text(encoding="utf-8").splitlines())
    source = sources.get(key, "")
    path = paths.ROOT / source
    if not source.endswith(".yaml") or not path.is_file():
        return False
    line = re.compile(rf"^\s*{re.escape(key.rsplit('.', 1)[-1])}\s*:.*#\s*why:")
    return any(line.match(text) for text in path.read_text(encoding="utf-8").splitlines())


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
def task_kind_has_its_keys(r: schema.Recipe) -> Iterator[Finding]:
    """Each task kind is scored from declarative keys (tunebook.evaluation.kinds): they must be
    there, and keys of another kind are a mistake, not a no-op."""
    kind = r.meta.task.kind
    if kind == "classification" and len(r.data.labels or []) < 2:
        yield Finding("error", "data.labels", "a classification task needs its labels (at least "
                      "two): set data.labels in the task file")
    if kind == "extraction" and not r.data.answer_schema:
        yield Finding("error", "data.answer_schema", "an extraction task needs the JSON Schema "
                      "its answers follow: set data.answer_schema to a .json file")
    if r.eval.checks and kind not in ("generation", "preference"):
        yield Finding("error", "eval.checks", f"rubric checks score free text; a {kind} task is "
                      "scored by its kind's own metrics: remove eval.checks")


# What the seeds of this field recommend a method for, in training rows: full fine-tuning wants
# thousands of examples (10k+ to be safe; fewer over-fit and forget), an adapter at least a few
# hundred; below these numbers the method is a poor fit for the data, not an error.
MIN_ROWS = {"full": 5000, "lora": 100, "qlora": 100}


def _rows(path: str) -> int | None:
    file = paths.ROOT / path
    if not file.is_file():
        return None
    with file.open("rb") as f:
        return sum(1 for line in f if line.strip())


@rule
def method_suits_data_size(r: schema.Recipe) -> Iterator[Finding]:
    """A full fine-tune on a few hundred rows over-fits and forgets; an adapter on a few dozen
    learns noise. Warn (a `# why:` on the recipe's method line keeps the choice)."""
    need = MIN_ROWS.get(r.meta.method.kind)
    rows = _rows(r.data.train) if need else None
    if need and rows is not None and rows < need:
        yield Finding("warning", "defaults.method", f"{r.meta.method.name} on {rows} training "
                      f"rows ({r.data.train}): the seeds' rule is at least {need:,} rows for "
                      f"{r.meta.method.kind} fine-tuning; use an adapter method, add data, or "
                      "keep it with a `# why:` on the recipe's method line")


@rule
def sequence_fits_model(r: schema.Recipe) -> Iterator[Finding]:
    seq = r.axolotl.get("sequence_len")
    if seq is not None and int(seq) > r.meta.model.max_positions:
        yield Finding("error", "axolotl.sequence_len", f"{seq} exceeds {r.meta.model.name}'s "
                      f"{r.meta.model.max_positions} positions; lower it")


@rule
def hardware_supports_kernels(r: schema.Recipe) -> Iterator[Finding]:
    """FlashAttention-2 and bf16 need Ampere or newer; packed samples must not see each other.

    Axolotl 0.19.0 keeps packed samples apart with the varlen backends (flash_attention_2, ...)
    and with sdpa and eager (a block-diagonal mask); with sdpa it routes packed rows through
    torch's varlen attention (``sdpa_varlen``, on unless set false, torch >= 2.10), which runs
    FlashAttention-2 kernels and so fails on GPUs without them."""
    gpu = gpus.table().get(r.meta.gpu)
    if gpu is None:
        yield Finding("error", "meta.gpu", f"unknown GPU {r.meta.gpu!r}"
                      f"{did_you_mean(r.meta.gpu, gpus.table())}; see recipes/hardware/gpus.yaml")
        return
    ax = r.axolotl
    attn = ax.get("attn_implementation") or ("flash_attention_2" if ax.get("flash_attention")
                                             else None)
    if attn == "flash_attention_2" and not gpu.flash_attention:
        yield Finding("error", "axolotl.attn_implementation",
                      f"FlashAttention-2 does not run on {gpu.name} ({gpu.id}); "
                      "use attn_implementation: sdpa")
    if ax.get("sample_packing"):
        from tunebook import axolotl_schema

        base = str(attn).split(":", 1)[0].split("@", 1)[0]  # a hub kernel's org/name
        if base not in axolotl_schema.packing_attention():
            yield Finding("warning", "axolotl.attn_implementation",
                          f"with sample_packing, Axolotl 0.19.0 does not keep packed samples "
                          f"apart under {attn!r}: they attend to each other; use sdpa, eager or "
                          "flash_attention_2")
        on_gpu = gpu.compute_capability is not None  # on a CPU Axolotl keeps stock SDPA
        if attn == "sdpa" and on_gpu and not gpu.flash_attention \
                and ax.get("sdpa_varlen") is not False:
            yield Finding("error", "axolotl.sdpa_varlen",
                          f"packed sdpa rows go through torch's varlen FlashAttention-2 kernel, "
                          f"which {gpu.name} ({gpu.id}) lacks (Ampere or newer); set "
                          "sdpa_varlen: false (packed rows then use a block-diagonal mask)")
    if ax.get("bf16") is True and not gpu.bf16:
        yield Finding("error", "axolotl.bf16",
                      f"{gpu.name} has no bf16; use bf16: false, fp16: true")


@rule
def chat_data_needs_template(r: schema.Recipe) -> Iterator[Finding]:
    if r.data.format in ("chat", "preference"):
        per_dataset = all(d.get("chat_template") for d in r.axolotl.get("datasets") or [{}])
        if not r.axolotl.get("chat_template") and not per_dataset:
            yield Finding("error", "axolotl.chat_template", f"{r.data.format} data is rendered "
                          "with a chat template; set chat_template (e.g. tokenizer_default)")


# Launcher rules (scale-out): what DeepSpeed, FSDP2 and Axolotl 0.19.0 accept together.

@rule
def launcher_matches_axolotl(r: schema.Recipe) -> Iterator[Finding]:
    """``launcher.kind`` and the Axolotl keys that select the same strategy must agree."""
    lk, ax = r.launcher, r.axolotl
    ds, fsdp = ax.get("deepspeed"), ax.get("fsdp_config") or ax.get("fsdp")
    if ds and fsdp:
        yield Finding("error", "axolotl.deepspeed", "DeepSpeed and FSDP are exclusive; pick one "
                      "launcher (launcher=deepspeed-zero3 or launcher=fsdp2)")
    if lk.kind == "deepspeed" and not ds:
        yield Finding("error", "axolotl.deepspeed", f"launcher {lk.name} is DeepSpeed but no "
                      "DeepSpeed config is set; set axolotl.deepspeed to a JSON file")
    if lk.kind == "fsdp" and not fsdp:
        yield Finding("error", "axolotl.fsdp_config", f"launcher {lk.name} is FSDP but "
                      "axolotl.fsdp_config is not set")
    if lk.kind in ("single", "ddp") and (ds or fsdp):
        key = "axolotl.deepspeed" if ds else "axolotl.fsdp_config"
        yield Finding("error", key, f"launcher {lk.name} does not shard; remove {key} or pick "
                      "a deepspeed-* or fsdp2 launcher")
    if lk.kind == "single" and lk.gpus_per_node * lk.nnodes > 1:
        yield Finding("error", "launcher.gpus_per_node", f"launcher single runs one process, "
                      f"got {lk.nnodes} node(s) x {lk.gpus_per_node} GPU(s); use launcher=ddp "
                      "(or a sharding launcher) for more than one GPU")
    if lk.offload and lk.kind not in ("deepspeed", "fsdp"):
        yield Finding("error", "launcher.offload", f"offload needs DeepSpeed or FSDP, launcher "
                      f"{lk.name} is {lk.kind}; use launcher=deepspeed-zero3-offload")


@rule
def deepspeed_file_matches_launcher(r: schema.Recipe) -> Iterator[Finding]:
    """The JSON's ZeRO stage and offload must match ``launcher:`` (the planner reads them)."""
    cfg, problem = schema.deepspeed_config(r.axolotl.get("deepspeed"))
    if problem:
        yield Finding("error", "axolotl.deepspeed", problem)
    if cfg is None:
        return
    zero = cfg.get("zero_optimization") or {}
    stage = schema.zero_stage(cfg)
    offloads = any((zero.get(k) or {}).get("device", "none") != "none"
                   for k in ("offload_optimizer", "offload_param"))
    lk = r.launcher
    claims = {"shards_weights": (lk.shards_weights, stage == 3),
              "shards_optimizer": (lk.shards_optimizer, stage >= 1),
              "offload": (lk.offload, offloads)}
    for key, (said, actual) in claims.items():
        if said != actual:
            yield Finding("error", f"launcher.{key}", f"is {said} but {r.axolotl['deepspeed']} "
                          f"(ZeRO stage {stage}, offload {offloads}) means {actual}; "
                          "make them agree")
    opt = str(r.axolotl.get("optimizer") or "")
    if offloads and ("8bit" in opt or "paged" in opt):
        yield Finding("error", "axolotl.optimizer", f"{opt} runs on the GPU only; with CPU "
                      "offload DeepSpeed steps the optimizer on the CPU: set "
                      "axolotl.optimizer=adamw_torch")


@rule
def qlora_sharded_weights(r: schema.Recipe) -> Iterator[Finding]:
    """Sharding a 4-bit base needs one storage dtype: Axolotl stores NF4 weights in bf16."""
    ax, lk = r.axolotl, r.launcher
    if not (ax.get("load_in_4bit") and lk.shards_weights):
        return
    gpu = gpus.table().get(r.meta.gpu)
    if ax.get("fp16") is True or ax.get("bf16") is False or (gpu is not None and not gpu.bf16):
        yield Finding("error", "axolotl.bf16", f"QLoRA with {lk.name} shards 4-bit weights "
                      "stored as bf16 (bnb_4bit_quant_storage); training in fp16/fp32 mixes "
                      "dtypes and sharding fails: use bf16: true on a bf16 GPU, or launcher=ddp")
    kwargs = ax.get("gradient_checkpointing_kwargs") or {}
    if lk.kind == "deepspeed" and ax.get("gradient_checkpointing") \
            and kwargs.get("use_reentrant") is False:
        yield Finding("error", "axolotl.gradient_checkpointing_kwargs.use_reentrant",
                      "QLoRA + ZeRO-3 with use_reentrant: false can raise CheckpointError "
                      "(Axolotl 0.19.0 warns); set it to true")
    if lk.kind == "fsdp" and (ax.get("fsdp_config") or {}).get("cpu_ram_efficient_loading"):
        yield Finding("error", "axolotl.fsdp_config.cpu_ram_efficient_loading",
                      "FSDP2 with load_in_4bit deadlocks when only rank 0 loads weights "
                      "(Axolotl 0.19.0 rejects it); set it to false")


@rule
def fsdp2_settings(r: schema.Recipe) -> Iterator[Finding]:
    """FSDP2 needs a wrap policy (else the model is one shard unit) and FSDP2-safe optimizers."""
    ax = r.axolotl
    fsdp = ax.get("fsdp_config")
    if not fsdp:
        return
    if str(ax.get("fsdp_version")) != "2":
        yield Finding("error", "axolotl.fsdp_version", "tunebook ships FSDP2 only (FSDP1 is "
                      "deprecated in Axolotl 0.19.0); set fsdp_version: 2")
    policy = fsdp.get("auto_wrap_policy")
    layer = families.get(r.meta.model.family).decoder_layer  # the model class's FSDP unit
    if policy is None:
        yield Finding("error", "axolotl.fsdp_config.auto_wrap_policy", "FSDP2 needs a wrap "
                      "policy, else the whole model is gathered at once; set "
                      "TRANSFORMER_BASED_WRAP (one unit per decoder layer)")
    elif policy == "SIZE_BASED_WRAP" and not fsdp.get("min_num_params"):
        yield Finding("error", "axolotl.fsdp_config.min_num_params", "SIZE_BASED_WRAP needs "
                      "min_num_params (e.g. 100000000)")
    cls = fsdp.get("transformer_layer_cls_to_wrap")
    if cls and layer and cls != layer:
        yield Finding("error", "axolotl.fsdp_config.transformer_layer_cls_to_wrap",
                      f"{cls!r} is not a layer of {r.meta.model.name}; expected {layer!r} "
                      "(or leave it unset: the model's own decoder layer is used)")
    opt = str(ax.get("optimizer") or "")
    if opt in ("adamw_8bit", "adamw_bnb_8bit"):
        yield Finding("error", "axolotl.optimizer", f"{opt} fails under FSDP2 (bitsandbytes "
                      "CUDA ops on sharded tensors); set axolotl.optimizer=adamw_torch_8bit")
    if ax.get("rl") and (ax.get("load_in_4bit") or ax.get("load_in_8bit")):
        yield Finding("error", "axolotl.load_in_4bit", f"FSDP2 cannot train {ax['rl']} on a "
                      "quantized base (Axolotl 0.19.0); use launcher=deepspeed-zero3")
    if ax.get("gradient_checkpointing") and fsdp.get("activation_checkpointing"):
        yield Finding("warning", "axolotl.gradient_checkpointing", "FSDP already checkpoints "
                      "activations; the Trainer's checkpointing adds an all-gather per layer")


@rule
def preference_reference_model(r: schema.Recipe) -> Iterator[Finding]:
    """Full-weight DPO keeps a second full model as reference; ZeRO-3 shards it, memory doubles."""
    ax = r.axolotl
    if ax.get("rl") and not ax.get("adapter") and r.launcher.shards_weights \
            and not ax.get("precompute_ref_log_probs"):
        yield Finding("warning", "axolotl.rl", f"{ax['rl']} without an adapter under "
                      f"{r.launcher.name} shards a second full reference model (2x weight "
                      "memory); use a LoRA method (the frozen base is the reference) or set "
                      "precompute_ref_log_probs: true")
