"""Baseline and side-by-side evaluation with lm-evaluation-harness, in one Python process.

``tunebook baseline`` scores the recipe's *base* model (prompting only: the task's system
prompt, the model's chat template, optional few-shot) on the recipe's suites; ``tunebook eval``
scores the *tuned* model of a run (base + adapter) on the same suites with the same prompts and
decoding. Both write lm-eval's results and per-sample logs, which ``tunebook gate`` pairs item
by item. Suites are lm-eval task YAMLs under ``eval-suites/`` loaded with
``TaskManager(include_path=..., include_defaults=False)``, which skips indexing lm-eval's ~14k
built-in tasks (the CLI's ~18 s of overhead).

Baselines are cached under ``runs/<recipe>/baseline/<key>/``, keyed by the model, the suite
versions and the prompt hash; ``eval`` refuses (exit 2) when its prompt hash or suite versions
differ from every baseline of the same model, because a paired comparison is only valid when
both models saw identical inputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tunebook import env, paths, tracking, twins
from tunebook.errors import UserError, did_you_mean
from tunebook.evaluation import kinds
from tunebook.rundir import RunDir
from tunebook.runlock import writes_run

META = "meta.json"
RESULTS = "results.json"
EVAL_DIR = "eval"
BASELINE_DIR = "baseline"
KIND_TEMPLATES = "_kinds"  # eval-suites/_kinds/: the kind templates task suites include
HASH_LIMIT = 256 << 20  # weight files above this are identified by name and size, not content


# ------------------------------------------------------------------------------------ spec


@dataclass
class EvalSpec:
    """Everything that must be identical between the base and the tuned evaluation."""

    suites: list[str]
    versions: dict[str, str]  # suite -> metadata.version
    system_prompt: str
    chat_template_sha: str
    few_shot: int
    max_new_tokens: int
    limit: int | None
    data: dict[str, str] = field(default_factory=dict)  # data file -> sha256
    # suite -> hash of its files, the kind templates, the scorers and the task's keys
    code: dict[str, str] = field(default_factory=dict)

    @property
    def prompt_hash(self) -> str:
        """Hash of how prompts are built and decoded: system prompt, template, shots, tokens."""
        parts = {"system_prompt": self.system_prompt, "chat_template": self.chat_template_sha,
                 "few_shot": self.few_shot, "max_new_tokens": self.max_new_tokens,
                 "limit": self.limit, "data": self.data}
        return _sha(json.dumps(parts, sort_keys=True))[:16]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "prompt_hash": self.prompt_hash}


def _sha(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def task_manager() -> Any:
    """lm-eval's task index over eval-suites/ only (no built-in tasks: instant)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(paths.EVAL_SUITES), include_defaults=False,
                       verbosity="ERROR")


def _suite_config(tm: Any, name: str) -> dict[str, Any]:
    if name not in tm.all_tasks:
        raise UserError(f"eval.suites: unknown suite {name!r}{did_you_mean(name, tm.all_tasks)}; "
                        f"suites are the task YAMLs under {paths.rel(paths.EVAL_SUITES)}/: "
                        f"{', '.join(sorted(tm.all_tasks))}")
    return tm._get_config(name)


def _abs(p: str) -> str:
    return str(p if os.path.isabs(p) else (paths.ROOT / p).resolve())


def task_overrides(config: dict[str, Any], tm: Any) -> list[dict[str, Any]]:
    """One lm-eval task dict per suite: absolute data files, the recipe's test/train split for
    the task's own suite, eval.max_new_tokens / eval.few_shot for the primary suite, and the
    task's scorer (its kind and keys) for every suite built on a kind template."""
    ev, data = config["eval"], config["data"]
    task_name = config["meta"]["task"]["name"]
    scorer = kinds.Scorer.from_config(config)
    out = []
    for name in ev["suites"]:
        cfg = _suite_config(tm, name)
        files = dict((cfg.get("dataset_kwargs") or {}).get("data_files") or {})
        if name == task_name:
            files["test"] = data["test"]
            if "train" in files:
                files["train"] = data["train"]
        files = {split: _abs(p) for split, p in files.items()}
        for split, p in files.items():
            if not Path(p).is_file():
                raise UserError(f"suite {name}: {split} data {paths.rel(p)} does not exist; "
                                "generate or restore it (data-templates/datasets/<task>/)")
        over: dict[str, Any] = {"task": name,
                                "dataset_kwargs": {**(cfg.get("dataset_kwargs") or {}),
                                                   "data_files": files}}
        if cfg.get("process_results") is kinds.process_results:  # eval-suites/_kinds/*.yaml
            if name != ev["primary"]["suite"] and files.get("test") != _abs(data["test"]):
                raise UserError(f"eval.suites: {name} is another task's suite (scored by that "
                                f"task's kind and keys); evaluate it with a recipe of that "
                                f"task, or drop it: eval.suites.{name}=false")
            over["process_results"] = scorer.process_results
            over["metric_list"] = scorer.metric_list()
        if name == ev["primary"]["suite"]:
            if cfg.get("output_type", "generate_until") == "generate_until":
                gen = dict(cfg.get("generation_kwargs") or {})
                gen["max_gen_toks"] = int(ev["max_new_tokens"])
                over["generation_kwargs"] = gen
            if ev.get("few_shot"):
                over["num_fewshot"] = int(ev["few_shot"])
        out.append(over)
    return out


def system_prompt(config: dict[str, Any]) -> str:
    path = config["data"].get("system_prompt")
    if not path:
        return ""
    file = Path(_abs(path))
    if not file.is_file():
        raise UserError(f"data.system_prompt: {path} does not exist; expected a file under "
                        "data-templates/prompts/")
    return file.read_text(encoding="utf-8").strip()


def build_spec(config: dict[str, Any], tokenizer: Any, tm: Any | None = None) -> EvalSpec:
    tm = tm or task_manager()
    overrides = task_overrides(config, tm)
    versions = {}
    data = {}
    for over in overrides:
        cfg = _suite_config(tm, over["task"])
        versions[over["task"]] = str((cfg.get("metadata") or {}).get("version", "none"))
        for p in over["dataset_kwargs"]["data_files"].values():
            data[paths.rel(p)] = paths.sha256(p)
    # What scores a suite: its own files, the kind templates, the scorers and the task's keys.
    # Per suite, so that a prompting arm over the primary suite alone compares with the baseline.
    shared = hashlib.sha256()
    for f in sorted((paths.EVAL_SUITES / KIND_TEMPLATES).iterdir()):
        if f.suffix in (".yaml", ".py"):
            shared.update(f.name.encode() + _code_bytes(f))
    for module in ("scoring.py", "kinds.py"):
        shared.update(Path(__file__).with_name(module).read_bytes())
    shared.update(json.dumps(kinds.Scorer.from_config(config).signature(),
                             sort_keys=True).encode())
    code = {}
    for over in overrides:
        h = shared.copy()
        for f in sorted(Path(tm.task_index[over["task"]]["yaml_path"]).parent.iterdir()):
            if f.suffix in (".yaml", ".py"):
                h.update(f.name.encode() + _code_bytes(f))
        code[over["task"]] = h.hexdigest()[:16]
    template = getattr(tokenizer, "chat_template", None) or ""
    ev = config["eval"]
    return EvalSpec(suites=list(ev["suites"]), versions=versions,
                    system_prompt=system_prompt(config), chat_template_sha=_sha(template)[:16],
                    few_shot=int(ev.get("few_shot") or 0), max_new_tokens=int(ev["max_new_tokens"]),
                    limit=ev.get("limit"), data=dict(sorted(data.items())),
                    code=code)


class _TaskLoader(yaml.SafeLoader):
    """Reads lm-eval task YAML with ``!function x`` kept as a plain string."""


_TaskLoader.add_constructor("!function", lambda loader, node: "!function "
                            + loader.construct_scalar(node))


def _code_bytes(file: Path) -> bytes:
    """What a suite file means: parsed YAML (comments and layout do not count) or source."""
    if file.suffix == ".yaml":
        try:
            return json.dumps(yaml.load(file.read_text(encoding="utf-8"), Loader=_TaskLoader),
                              sort_keys=True, default=str).encode()
        except yaml.YAMLError:
            pass
    return file.read_bytes()



def model_id(model: str) -> dict[str, Any]:
    """What identifies a base model: a local dir by its config and weights, a hub id by name."""
    p = Path(model)
    if not p.is_dir():
        return {"name": model}
    h = hashlib.sha256()
    for f in sorted(p.iterdir()):
        if f.is_file() and (f.suffix in (".safetensors", ".bin") or f.name == "config.json"):
            h.update(f.name.encode())
            h.update(paths.sha256(f).encode() if f.stat().st_size <= HASH_LIMIT
                     else str(f.stat().st_size).encode())
    return {"name": paths.rel(p.resolve()), "sha": h.hexdigest()[:16]}


def baseline_key(model: dict[str, Any], spec: EvalSpec) -> str:
    return _sha(json.dumps({"model": model, "versions": spec.versions, "code": spec.code,
                            "prompt": spec.prompt_hash}, sort_keys=True))[:16]


# ------------------------------------------------------------------------------------ running


def load_lm(pretrained: str, adapter: str | None = None,
            batch_size: int | str | None = None) -> Any:
    """lm-eval's HF model on CPU (or the first GPU), with an optional PEFT adapter.

    Batch 32 on CPU: on the tiny default it is ~3x faster than 8 (fewer generate loops);
    on a GPU lm-eval probes the largest batch that fits (``auto``).
    """
    import torch
    from lm_eval.models.huggingface import HFLM

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if batch_size is None:
        batch_size = "auto" if device == "cuda" else 32
    kwargs: dict[str, Any] = {"pretrained": pretrained, "device": device,
                              "batch_size": batch_size,
                              "dtype": "float32" if device == "cpu" else "auto"}
    if adapter:
        kwargs["peft"] = adapter
    try:
        return HFLM(**kwargs)
    except OSError as e:
        what = f"{pretrained!r}" + (f" + adapter {adapter}" if adapter else "")
        raise UserError(f"cannot load model {what} offline: {str(e).splitlines()[0]}; on this "
                        "machine evaluate a tiny twin "
                        "(OVERRIDES='+profile=cpu-smoke') or the default recipe") from None


def run_suites(config: dict[str, Any], lm: Any, spec: EvalSpec, out_dir: Path,
               tm: Any | None = None) -> dict[str, Any]:
    """Evaluate ``lm`` on the recipe's suites; write results.json and samples_<suite>.jsonl."""
    from lm_eval import simple_evaluate

    tm = tm or task_manager()
    started = time.time()
    with env.offline():
        res = simple_evaluate(model=lm, tasks=task_overrides(config, tm), task_manager=tm,
                              apply_chat_template=True,
                              system_instruction=spec.system_prompt or None,
                              fewshot_as_multiturn=True, limit=spec.limit, log_samples=True,
                              bootstrap_iters=0, verbosity="ERROR")
    wall = time.time() - started
    out_dir.mkdir(parents=True, exist_ok=True)
    samples = res.pop("samples", {})
    for suite, rows in samples.items():
        with (out_dir / f"samples_{suite}.jsonl").open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, default=str, ensure_ascii=False) + "\n")
    keep = {k: res.get(k) for k in ("results", "versions", "n-samples", "configs", "n-shot",
                                    "higher_is_better", "config", "chat_template_sha",
                                    "system_instruction_sha", "lm_eval_version")}
    (out_dir / RESULTS).write_text(json.dumps(keep, indent=2, default=str) + "\n",
                                   encoding="utf-8")
    return {"wall_s": round(wall, 2), "metrics": summarize(keep["results"] or {})}


def summarize(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``{suite: {metric: value}}`` from lm-eval's ``"metric,filter"`` keys (stderr dropped)."""
    out: dict[str, dict[str, float]] = {}
    for suite, values in results.items():
        for key, value in values.items():
            if "," not in key or "_stderr" in key or not isinstance(value, (int, float)):
                continue
            out.setdefault(suite, {})[key.split(",")[0]] = float(value)
    return out


def write_meta(out_dir: Path, **fields: Any) -> None:
    (out_dir / META).write_text(json.dumps(fields, indent=2, sort_keys=True, default=str) + "\n",
                                encoding="utf-8")


def read_meta(out_dir: Path) -> dict[str, Any]:
    return json.loads((out_dir / META).read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------ baseline


def base_model(config: dict[str, Any]) -> str:
    """The recipe's base model path or hub id, building our twin / tiny base when it is one."""
    return twins.ensure_base(config)


def load_tokenizer(model: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model, local_files_only=True)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load the tokenizer of {model!r} offline: "
                        f"{str(e).splitlines()[0]}; use OVERRIDES='+profile=cpu-smoke' here"
                        ) from None


def baseline_root(recipe: str) -> Path:
    return paths.RUNS / recipe / BASELINE_DIR


def arm_config(config: dict[str, Any], shots: int) -> dict[str, Any]:
    """The config of a prompting arm of the baseline: the primary suite with ``shots``
    examples from the train split (the arm the tuned model is deployed with keeps every suite)."""
    ev = config["eval"]
    if shots == int(ev.get("few_shot") or 0):
        return config
    return {**config, "eval": {**ev, "few_shot": shots, "suites": [ev["primary"]["suite"]]}}


def baseline_arms(config: dict[str, Any]) -> list[int]:
    """The numbers of examples the base is prompted with: the deployed arm first."""
    ev = config["eval"]
    deployed = int(ev.get("few_shot") or 0)
    shots = [int(k) for k in (ev.get("baseline_shots") or [deployed])]
    return [deployed, *sorted(set(shots) - {deployed})]


def baseline(config: dict[str, Any], recipe: str, *, lm: Any = None, force: bool = False,
             log: Any = print) -> Path:
    """Evaluate the base model of ``config`` in every prompting arm (``eval.baseline_shots``:
    the deployed arm on every suite, the others on the primary suite), each cached by its
    spec; return the deployed arm's directory."""
    model = base_model(config)
    tm = task_manager()
    tokenizer = load_tokenizer(model)
    mid = model_id(model)
    dirs = []
    for shots in baseline_arms(config):
        arm = arm_config(config, shots)
        spec = build_spec(arm, tokenizer, tm)
        key = baseline_key(mid, spec)
        out = baseline_root(recipe) / key
        dirs.append(out)
        if (out / META).is_file() and not force:
            log(f"baseline of {mid['name']} ({shots}-shot) is cached: {paths.rel(out)}/")
            continue
        lm = lm or load_lm(model)
        summary = run_suites(arm, lm, spec, out, tm)
        write_meta(out, kind="baseline", recipe=recipe, model=mid, model_path=model,
                   adapter=None, key=key, shots=shots, spec=spec.to_json(),
                   created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), **summary)
        log(f"baseline of {mid['name']} ({shots}-shot) on {', '.join(spec.suites)} in "
            f"{summary['wall_s']} s: {paths.rel(out)}/")
        _print_metrics(summary["metrics"], log)
    return dirs[0]


def arm_dirs(config: dict[str, Any], recipe: str, mid: dict[str, Any],
             tokenizer: Any, tm: Any) -> dict[str, str]:
    """``{"<k>-shot": baseline dir}`` of every prompting arm; a missing arm is a UserError."""
    out = {}
    for shots in baseline_arms(config):
        spec = build_spec(arm_config(config, shots), tokenizer, tm)
        found = baseline_root(recipe) / baseline_key(mid, spec)
        if not (found / META).is_file():
            raise UserError(f"no {shots}-shot baseline of {mid['name']} for recipe {recipe} "
                            f"(eval.baseline_shots); run `make baseline RECIPE={recipe}` first")
        out[f"{shots}-shot"] = str(found)
    return out


def _print_metrics(metrics: dict[str, dict[str, float]], log: Any) -> None:
    for suite, values in metrics.items():
        log(f"  {suite:14s} " + "  ".join(f"{k}={v:.3f}" for k, v in values.items()))


# ------------------------------------------------------------------------------------ eval


def run_config(run: RunDir) -> dict[str, Any]:
    """The effective recipe of a run, as it was rendered (resolved.yaml)."""
    file = run.path / "resolved.yaml"
    if not file.is_file():
        raise UserError(f"RUN={paths.rel(run.path)}: no resolved.yaml; not a rendered run")
    return yaml.safe_load(file.read_text(encoding="utf-8"))


def run_models(run: RunDir) -> tuple[str, str | None]:
    """(base model, adapter dir or None) of a trained run, from its axolotl.yaml."""
    ax = yaml.safe_load(run.axolotl_yaml.read_text(encoding="utf-8"))
    out = Path(ax.get("output_dir") or run.output_dir)
    base = str(ax["base_model"])
    if (out / "adapter_config.json").is_file():
        return base, str(out)
    if (out / "config.json").is_file() and any(out.glob("*.safetensors")):
        return str(out), None  # full fine-tune: the output is the model
    raise UserError(f"RUN={paths.rel(run.path)}: no trained model in {paths.rel(out)}/ "
                    "(no adapter_config.json); train it first with `make train`")


def matching_baseline(recipe: str, mid: dict[str, Any], spec: EvalSpec) -> Path:
    """The baseline with exactly this model, suite versions and prompt hash, or a UserError
    that says which of them differs."""
    key = baseline_key(mid, spec)
    exact = baseline_root(recipe) / key
    if (exact / META).is_file():
        return exact
    same_model = []
    for meta_file in sorted(baseline_root(recipe).glob(f"*/{META}"), key=os.path.getmtime):
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        if meta.get("model") == mid:
            same_model.append(meta)
    if not same_model:
        raise UserError(f"no baseline of {mid['name']} for recipe {recipe} under "
                        f"{paths.rel(baseline_root(recipe))}/; run `make baseline RECIPE={recipe}` "
                        "(with the same OVERRIDES) first")
    latest = same_model[-1]["spec"]
    diffs = spec_differences(latest, spec.to_json())
    raise UserError(f"the tuned model's evaluation would not match the baseline of recipe "
                    f"{recipe}: "
                    + "; ".join(diffs) + f". Paired comparison needs identical inputs: re-run "
                    f"`make baseline RECIPE={recipe}` so both use the current prompts and suites")


def spec_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    diffs = []
    for suite in sorted(set(old.get("versions", {})) | set(new.get("versions", {}))):
        a, b = old.get("versions", {}).get(suite), new.get("versions", {}).get(suite)
        if a != b:
            diffs.append(f"suite {suite} version {a} (baseline) vs {b} (now)")
    if old.get("code") != new.get("code"):
        diffs.append("the suites' scoring (eval-suites/*, the task's kind and keys) changed "
                     "since the baseline")
    if old.get("prompt_hash") != new.get("prompt_hash"):
        parts = [k for k in ("system_prompt", "chat_template_sha", "few_shot", "max_new_tokens",
                             "limit", "data") if old.get(k) != new.get(k)]
        diffs.append(f"prompt hash {old.get('prompt_hash')} (baseline) vs {new.get('prompt_hash')}"
                     f" (now); differs in {', '.join(parts) or 'unknown parts'}")
    return diffs or ["the model differs"]


@writes_run("eval")  # one writer per run (tunebook.runlock)
def evaluate_run(run: RunDir, *, lm: Any = None, log: Any = print) -> Path:
    """Evaluate the tuned model of ``run`` on its recipe's suites; write ``<run>/eval/``."""
    config = run_config(run)
    base, adapter = run_models(run)
    tm = task_manager()
    spec = build_spec(config, load_tokenizer(base), tm)
    mid = model_id(base)
    base_dir = matching_baseline(run.recipe, mid, spec)
    arms = arm_dirs(config, run.recipe, mid, load_tokenizer(base), tm)
    out = run.path / EVAL_DIR
    lm = lm or load_lm(base, adapter)
    summary = run_suites(config, lm, spec, out, tm)
    write_meta(out, kind="tuned", recipe=run.recipe, model=mid, model_path=base, adapter=adapter,
               key=baseline_key(mid, spec), baseline=str(base_dir), arms=arms,
               spec=spec.to_json(),
               created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), **summary)
    run.update_manifest(eval={"dir": str(out), "baseline": str(base_dir),
                              "metrics": summary["metrics"], "wall_s": summary["wall_s"]})
    tracking.record(run, eval_metrics=summary["metrics"])  # (tracking) same MLflow run
    log(f"tuned model of {paths.rel(run.path)} on {', '.join(spec.suites)} in "
        f"{summary['wall_s']} s: {paths.rel(out)}/ (baseline {paths.rel(base_dir)}/)")
    _print_metrics(summary["metrics"], log)
    return out


def load_samples(out_dir: Path, suite: str) -> list[dict[str, Any]]:
    file = out_dir / f"samples_{suite}.jsonl"
    if not file.is_file():
        raise UserError(f"{paths.rel(file)} is missing; re-run the evaluation that writes it")
    return [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines() if line]
