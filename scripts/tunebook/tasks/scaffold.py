"""The files ``make new-task`` writes for a task, as text: first drafts a practitioner edits.

Each writer returns the file's text; ``tunebook.tasks.create`` decides the values (labels,
lengths, the GPU) and writes them. The files follow the shipped tasks' shape: a task group file
(``recipes/task/<task>.yaml``), an lm-eval suite that includes its kind's template, a system
prompt, and two recipes with the four-line header (purpose, the make line, the planned
hardware, suites and status).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Any

import yaml

from tunebook import paths
from tunebook.evaluation.kinds import PRIMARY_METRIC, VALIDITY_METRIC

# The ship policy a new task starts with, per kind: the smallest absolute gain of the primary
# metric that is worth shipping (classification and extraction: 5 points of accuracy or
# field F1; free text: 2 points of ROUGE-L, which moves less).
MIN_GAIN = {"classification": 0.05, "extraction": 0.05, "generation": 0.02, "preference": 0.02}


def methods(kind: str) -> tuple[str, str]:
    """(tiny recipe's method, GPU recipe's method): supervised kinds train LoRA on the tiny base
    and QLoRA on a GPU; preference pairs train DPO on a LoRA adapter on both."""
    return ("dpo-lora", "dpo-lora") if kind == "preference" else ("lora", "qlora")


def recipe_name(prefix: str, method: str, task: str) -> str:
    """``<model><size>-<method>-<task>``: the method part is the method group's first word."""
    return f"{prefix}-{method.split('-')[0]}-{task}"


@dataclass(frozen=True)
class TaskSpec:
    """Everything the writers need to know about a new task."""

    name: str
    kind: str
    description: str
    source: str  # the user's file, repository-relative or as given
    rows: int  # usable rows after cleaning
    split: tuple[int, int, int]
    labels: tuple[str, ...] = ()
    sequence_len: int = 512
    longest: int = 0  # tokens of the longest row (the tokenizers named in length_note)
    length_note: str = ""
    max_new_tokens: int = 128
    max_label_imbalance: float | None = None  # when the data's own balance exceeds the default
    imbalance_note: str = ""

    @property
    def data_dir(self) -> str:
        return f"data-templates/datasets/{self.name}"

    @property
    def prompt_file(self) -> str:
        return f"data-templates/prompts/{self.name}-system.txt"

    @property
    def schema_file(self) -> str:
        return f"{self.data_dir}/answer.schema.json"

    @property
    def tiny_recipe(self) -> str:
        return recipe_name("tiny", methods(self.kind)[0], self.name)

    @property
    def suites(self) -> str:
        return ", ".join((self.name, *regression_suites()))


@cache
def regression_suites() -> tuple[str, ...]:
    """The regression suites every task shares, as ``recipes/task/_regression.yaml`` lists them."""
    shared = yaml.safe_load((paths.RECIPES / "task" / "_regression.yaml").read_text())
    return tuple(shared["eval"]["suites"])


def system_prompt(spec: TaskSpec, schema: dict[str, Any] | None = None) -> str:
    """A first draft of the task's system prompt; the practitioner edits it."""
    if spec.kind == "classification":
        return (f"You sort each message into exactly one of these labels: "
                f"{', '.join(spec.labels)}. Answer with the label only, nothing else.\n")
    if spec.kind == "extraction":
        fields = ", ".join(f"{k} ({_type(v)})" for k, v in (schema or {}).get("properties",
                                                                           {}).items())
        return ("You extract structured data from each message. Answer with one JSON object "
                f"and nothing else, with exactly these keys: {fields}. Use null when the text "
                "does not state a value.\n")
    return ("You reply to each message in the style, tone and format of the replies you were "
            "trained on.\n")


def _type(prop: dict[str, Any]) -> str:
    t = prop.get("type", "any")
    return " or ".join(t) if isinstance(t, list) else str(t)


def task_file(spec: TaskSpec) -> str:
    """``recipes/task/<task>.yaml``: data, prompt, kind keys, suites and ship policy."""
    wiring = "_preference" if spec.kind == "preference" else "_chat"
    lines = [
        "# @package _global_",
        f"# {spec.name}: {spec.description}. Made by `make new-task` from {spec.source};",
        "# edit freely (the prompt, the ship policy, data.checks), then `make validate lock`.",
        "defaults:",
        f"  - {wiring}",
        "  - _regression",
        "  - _self_",
        "meta:",
        "  task:",
        f"    name: {spec.name}",
        f"    kind: {spec.kind}",
        f"    description: {json.dumps(spec.description)}",
        "data:",
        f"  train: {spec.data_dir}/train.jsonl   # {spec.split[0]} rows",
        f"  val: {spec.data_dir}/val.jsonl       # {spec.split[1]} rows",
        f"  test: {spec.data_dir}/test.jsonl     # {spec.split[2]} rows, held out for eval",
        f"  system_prompt: {spec.prompt_file}",
    ]
    if spec.kind == "classification":
        lines.append(f"  labels: [{', '.join(json.dumps(x) for x in spec.labels)}]")
    if spec.kind == "extraction":
        lines.append(f"  answer_schema: {spec.schema_file}   # inferred from the replies")
    if spec.max_label_imbalance is not None:
        lines += ["  checks:",
                  f"    max_label_imbalance: {spec.max_label_imbalance}   "
                  f"# the data's own balance ({spec.imbalance_note}); lower it after rebalancing"]
    metric = PRIMARY_METRIC[spec.kind]
    lines += [
        "axolotl:",
        f"  sequence_len: {spec.sequence_len}   # longest row: {spec.longest} tokens "
        f"({spec.length_note})",
        "eval:",
        f"  suites: {{{spec.name}: true}}  # + the shared regression suites (_regression)",
        f"  primary: {{suite: {spec.name}, metric: {metric}}}",
        f"  min_gain: {MIN_GAIN[spec.kind]}   # absolute gain of {metric} over the base",
        f"  max_new_tokens: {spec.max_new_tokens}   # the longest reference answer, with room",
    ]
    validity = VALIDITY_METRIC[spec.kind]
    if validity:
        lines.append(f"  # the reply's form ({validity}) is reported beside {metric} by the gate")
    return "\n".join(lines) + "\n"


def suite_file(spec: TaskSpec) -> str:
    """``eval-suites/<task>/<task>.yaml``: the lm-eval task over the test split."""
    template = "generation" if spec.kind == "preference" else spec.kind
    return "\n".join([
        f"# {spec.name}: {spec.description}, on the held-out test split; scored by the",
        f"# {spec.kind} kind with the keys in recipes/task/{spec.name}.yaml (made by "
        "`make new-task`).",
        f"include: ../_kinds/{template}.yaml",
        f"task: {spec.name}",
        "dataset_kwargs:",
        "  data_files:  # repository-relative; tunebook makes them absolute",
        f"    train: {spec.data_dir}/train.jsonl",
        f"    test: {spec.data_dir}/test.jsonl",
        "generation_kwargs:",
        "  until: []",
        "  do_sample: false",
        f"  max_gen_toks: {spec.max_new_tokens}",
        "metadata:",
        "  version: 1.0",
        "",
    ])


def tiny_recipe(spec: TaskSpec, *, steps_per_epoch: int) -> str:
    """``recipes/tiny-<method>-<task>.yaml``: the task on the embedded tiny base, on a CPU."""
    name = spec.tiny_recipe
    method = methods(spec.kind)[0]
    half = max(1, steps_per_epoch // 2)
    dpo = ["  learning_rate: 5.0e-5             # why: DPO diverges at supervised rates; the "
           "method's 5e-6 barely moves the tiny base"] if method == "dpo-lora" else []
    return "\n".join([
        f"# {name}: {spec.description}, {method} on the tiny Llama, on a laptop CPU",
        f"# Run:     make train RECIPE={name}   (make demo RECIPE={name}: the whole loop)",
        "# Planned: CPU only (laptop, CI), no GPU; its base is built here "
        "(recipes/model/tiny-llama.yaml)",
        f"# Suites:  {spec.suites}        Status: dev",
        "defaults:",
        "  - model: tiny-llama",
        f"  - method: {method}",
        f"  - task: {spec.name}",
        "  - launcher: single",
        "  - profile/tiny-lora                # how LoRA trains the tiny base on a CPU",
        "  - _self_",
        "meta:",
        f"  title: {json.dumps(f'{spec.description}, {method} on the tiny Llama, on a CPU')}",
        "  status: dev",
        "  hardware: CPU only (laptop, CI)",
        "axolotl:",
        *dpo,
        f"  eval_steps: {half}                    # why: validate every half epoch "
        f"({spec.split[0]} rows / 16 = {steps_per_epoch} steps)",
        f"  save_steps: {half}                    # why: checkpoint at each validation",
        "",
    ])


def gpu_recipe(spec: TaskSpec, *, prefix: str, model: str, gpu_id: str, gpu_name: str,
               gpu_gb: float) -> str:
    """``recipes/<model>-<method>-<task>.yaml``: the task on a real model and GPU."""
    method = methods(spec.kind)[1]
    name = recipe_name(prefix, method, spec.name)
    return "\n".join([
        f"# {name}: {spec.description}, {method} on one {gpu_gb:g} GB GPU",
        f"# Run:     make train RECIPE={name}",
        f"# Planned: {gpu_name}; make plan RECIPE={name} GPU={gpu_id}",
        f"# Suites:  {spec.suites}        Status: dev",
        "defaults:",
        f"  - model: {model}",
        f"  - method: {method}",
        f"  - task: {spec.name}",
        "  - launcher: single",
        "  - _self_",
        "",
        "meta:",
        f"  title: {json.dumps(f'{spec.description}, {method} on one {gpu_gb:g} GB GPU')}",
        "  status: dev",
        f"  hardware: {json.dumps(f'1x {gpu_name}')}",
        f"  gpu: {gpu_id}",
        "",
    ])
