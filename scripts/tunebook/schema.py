"""The schema of tunebook's own sections: ``meta``, ``data``, ``eval`` and ``launcher``.

Every model forbids unknown keys, so a typo anywhere in a recipe, a group file or an override
fails with a did-you-mean instead of vanishing. The ``axolotl`` section is Axolotl's and is
checked against Axolotl's own schema (``tunebook.axolotl_schema``).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_serializer,
    model_validator,
)

from tunebook import families


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelInfo(_Strict):
    """Set by ``recipes/model/*.yaml``: what the planner and the twins need to know."""

    name: str
    family: str  # a key of tunebook.families.FAMILIES
    hub_id: str | None = None  # None only for a base built here (``twin`` names it)
    revision: str | None = None  # a Hub commit sha, where one was validated
    licence: str
    params_b: float = Field(gt=0)
    layers: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    heads: int = Field(gt=0)
    kv_heads: int = Field(gt=0)
    head_dim: int | None = None  # when not hidden_size / heads (Gemma 2)
    intermediate_size: int = Field(gt=0)
    vocab_size: int = Field(gt=0)
    max_positions: int = Field(gt=0)
    tie_embeddings: bool
    lora_target_modules: list[str]
    twin: str | None = None  # path of a locally built base (the embedded tiny default)

    @field_validator("family")
    @classmethod
    def _known_family(cls, value: str) -> str:
        if value not in families.FAMILIES:
            raise ValueError(f"unknown family {value!r}; families: {', '.join(families.names())} "
                             "(tunebook/families.py)")
        return value

    @model_validator(mode="after")
    def _heads_divide(self) -> ModelInfo:
        if self.hub_id is None and self.twin is None:
            raise ValueError("set hub_id (a Hub model id) or twin (a locally built base)")
        if self.heads % self.kv_heads:
            raise ValueError(f"heads ({self.heads}) must be a multiple of kv_heads "
                             f"({self.kv_heads})")
        return self


class MethodInfo(_Strict):
    """Set by ``recipes/method/*.yaml``."""

    name: str
    kind: Literal["lora", "qlora", "full", "dpo"]
    learning_rate_range: tuple[float, float]  # the field's recommended range; outside => warning


class TaskInfo(_Strict):
    """Set by ``recipes/task/*.yaml``."""

    name: str
    kind: Literal["generation", "classification", "extraction", "preference"]
    description: str


class Meta(_Strict):
    title: str
    status: Literal["stable", "dev", "archived"]
    hardware: str  # human words, e.g. "1x 24 GB (RTX 4090, A10G, L4)"
    gpu: str  # the GPU id it was planned for (recipes/hardware/gpus.yaml); `make plan` default
    model: ModelInfo
    method: MethodInfo
    task: TaskInfo


class DataChecks(_Strict):
    """Thresholds of the data gate; a task sets them, OVERRIDES can change them."""

    near_duplicate_threshold: float = Field(0.8, gt=0, le=1)  # MinHash Jaccard, 5-gram shingles
    max_exact_duplicates: int = Field(0, ge=0)
    max_near_duplicates: int = Field(0, ge=0)
    max_leaks: int = Field(0, ge=0)  # rows of val/test that (near-)duplicate a train row
    max_label_imbalance: float = Field(1.5, ge=1)  # largest class / smallest class
    max_too_long: int = Field(0, ge=0)  # rows longer than axolotl.sequence_len
    max_pii: int = Field(0, ge=0)
    max_errors_per_code: int = Field(10, gt=0)  # printed per code; the rest are counted


class Data(_Strict):
    format: Literal["chat", "instruction", "completion", "preference"]
    train: str  # paths relative to the repository root
    val: str
    test: str
    system_prompt: str | None = None  # a file under data-templates/prompts/
    labels: list[str] | None = None  # classification: the allowed answers
    answer_schema: str | None = None  # extraction: JSON Schema file the answers follow
    checks: DataChecks = DataChecks()


class Guard(_Strict):
    """A suite that must not regress: the tuned model is non-inferior to the base by
    ``max_regression`` (absolute, on the metric's scale; 0: no item may get worse)."""

    metric: str
    max_regression: float = Field(ge=0)


class Validity(_Strict):
    """The reply's required form (the task kind's validity metric: a label was produced, the
    JSON follows the schema) is a guard of the primary suite: at least ``floor`` of the tuned
    model's replies have it, and it is non-inferior to the base by ``max_regression``."""

    floor: float = Field(0.95, ge=0, le=1)
    max_regression: float = Field(0.02, ge=0)


class Review(_Strict):
    """Blind human review of base vs tuned (``make review``, ``make review-score``)."""

    required: bool = False  # make register refuses a run without a significant preference
    rubric: list[str] = ["accuracy", "tone", "completeness"]  # 1-5 columns beside the A/B choice
    items: int = Field(100, gt=0)  # what the sheet asks for; fewer available is said loudly


class CheckSpec(_Strict):
    """A declarative rubric check of a generation task (``eval.checks.<name>``): one 0/1
    metric, 1 when every condition holds (``tunebook.evaluation.kinds.Check``)."""

    must_include: str | list[str] | None = None  # substrings
    must_not_include: str | list[str] | None = None
    must_match: str | list[str] | None = None  # Python regular expressions, searched
    must_not_match: str | list[str] | None = None
    max_chars: int | None = Field(None, gt=0)
    max_words: int | None = Field(None, gt=0)
    case_sensitive: bool = False  # for must_include / must_not_include

    @model_serializer(mode="wrap")
    def _only_what_is_set(self, handler: Any) -> dict[str, Any]:
        """A check is its conditions: the effective config lists the ones set, not the rest."""
        return {k: v for k, v in handler(self).items()
                if v is not None and not (k == "case_sensitive" and v is False)}

    @model_validator(mode="after")
    def _regexes_compile(self) -> CheckSpec:
        for key in ("must_match", "must_not_match"):
            value = getattr(self, key)
            for pattern in [value] if isinstance(value, str) else value or []:
                try:
                    re.compile(pattern)
                except re.error as e:
                    raise ValueError(f"{key}: {pattern!r} is not a regular expression ({e})") \
                        from None
        return self


class Primary(_Strict):
    suite: str
    metric: str


class Eval(_Strict):
    # In recipe files a mapping {suite: true/false} (Hydra merges mappings, so the shared
    # regression suites are declared once); here the enabled suites, the primary one first.
    suites: list[str]
    primary: Primary
    min_gain: float = Field(ge=0)  # absolute gain over base required on the primary metric
    alpha: float = Field(0.05, gt=0, lt=1)
    guards: dict[str, Guard] = {}
    checks: dict[str, CheckSpec] = {}  # generation/preference tasks: rubric checks, 0/1 each
    few_shot: int = Field(0, ge=0)  # examples in the prompt the tuned model is deployed with
    # prompting arms of the baseline: the base is scored with each number of examples from the
    # train split, and the tuned model must beat the best of them on the primary metric
    baseline_shots: list[int] = [0, 3]
    validity: Validity = Validity()
    review: Review = Review()
    max_new_tokens: int = Field(128, gt=0)
    limit: int | None = None  # evaluate the first N items of each suite (smoke runs)

    @model_validator(mode="before")
    @classmethod
    def _enabled_suites(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("suites"), dict):
            enabled = [name for name, on in data["suites"].items() if on]
            primary = (data.get("primary") or {}).get("suite")
            if primary in enabled:  # the primary suite first, the rest in declaration order
                enabled.remove(primary)
                enabled.insert(0, primary)
            data = {**data, "suites": enabled}
        return data

    @model_validator(mode="after")
    def _primary_in_suites(self) -> Eval:
        if self.primary.suite not in self.suites:
            raise ValueError(f"primary.suite {self.primary.suite!r} is not in suites {self.suites}")
        for g in self.guards:
            if g not in self.suites:
                raise ValueError(f"guard {g!r} is not in suites {self.suites}")
        if self.few_shot not in self.baseline_shots or any(k < 0 for k in self.baseline_shots):
            raise ValueError(f"baseline_shots {self.baseline_shots} must include few_shot "
                             f"({self.few_shot}), the prompt the tuned model is compared with, "
                             "and count examples (>= 0)")
        return self


def deepspeed_config(value: Any) -> tuple[dict[str, Any] | None, str | None]:
    """``axolotl.deepspeed`` parsed (a JSON file under the repository, or an inline mapping), or
    the problem with it (missing, malformed, not an object, a ZeRO stage DeepSpeed does not
    know); validation reports the problem, the planner reads the stage (``zero_stage``)."""
    import json

    from tunebook import paths

    if not value:
        return None, None
    if isinstance(value, dict):
        config: Any = value
    else:
        try:
            config = json.loads((paths.ROOT / str(value)).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None, (f"{value} does not exist; point it to a file in "
                          "recipes/launcher/deepspeed/")
        except json.JSONDecodeError as e:
            return None, f"{value}:{e.lineno}: malformed JSON ({e.msg}); fix the file"
    if not isinstance(config, dict):
        return None, f"{value}: expected a JSON object of DeepSpeed settings, got " \
                     f"{type(config).__name__}; fix the file"
    stage = (config.get("zero_optimization") or {}).get("stage", 0)
    if stage not in (0, 1, 2, 3) or isinstance(stage, bool):
        where = "the inline axolotl.deepspeed" if isinstance(value, dict) else value
        return None, (f"zero_optimization.stage is {stage!r} in {where}; "
                      "DeepSpeed knows 0, 1, 2 and 3")
    return config, None


def zero_stage(config: dict[str, Any]) -> int:
    """The ZeRO stage of a DeepSpeed config that ``deepspeed_config`` accepted (0 when unset,
    as in DeepSpeed)."""
    return int((config.get("zero_optimization") or {}).get("stage", 0))


class Launcher(_Strict):
    name: str
    kind: Literal["single", "ddp", "deepspeed", "fsdp"]
    gpus_per_node: int = Field(1, gt=0)
    nnodes: int = Field(1, gt=0)
    shards_optimizer: bool = False  # ZeRO-2/3, FSDP
    shards_weights: bool = False  # ZeRO-3, FSDP full shard
    offload: bool = False  # optimizer/params to CPU


class Recipe(_Strict):
    meta: Meta
    axolotl: dict
    data: Data
    eval: Eval
    launcher: Launcher


def fields_at(dotted: str) -> list[str]:
    """Field names of the model at ``dotted`` (``""`` is the whole recipe), or ``[]``."""
    model: type[BaseModel] = Recipe
    for part in [p for p in dotted.split(".") if p]:
        field = model.model_fields.get(part)
        inner = field.annotation if field else None
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
            return []
        model = inner
    return list(model.model_fields)


def has_default(dotted: str) -> bool:
    """Whether ``dotted`` (e.g. ``data.checks.max_pii``) is a field of our sections that has a
    default, so an override may set it even when no recipe file wrote it."""
    model: type[BaseModel] = Recipe
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        if i == len(parts) - 1:
            return not field.is_required()
        inner = field.annotation
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
            return False
        model = inner
    return False
