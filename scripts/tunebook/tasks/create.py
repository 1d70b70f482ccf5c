"""``make new-task``: a practitioner's data file becomes a task tunebook can train, evaluate and
gate, in one command.

Stages, in order; everything that can refuse runs before anything is written:

1. the name: a lower-case slug, not a shipped task or suite, not taken (unless ``force``);
2. read: any layout ``make convert`` knows (inferred from the file when ``source`` is None; a
   CSV with ``text,label`` columns is classification data), bad rows -> exit 2 naming
   ``file:line``;
3. the kind (classification, extraction, generation, preference), inferred and explained;
4. the data checks: malformed rows -> exit 2; exact and near duplicates dropped and listed;
   personal data and label imbalance reported against the checks' thresholds; fewer usable
   rows than ``MIN_ROWS`` -> exit 1;
5. a leak-free 80/10/10 split (near-duplicate clusters in one split), stratified by label;
6. the files: the splits, a system prompt draft, the task file, the suite, the JSON Schema
   (extraction), ``tiny-lora-<task>`` (the embedded CPU base) and ``<model>-qlora-<task>`` on
   the cheapest GPU the planner says it fits (preference pairs: ``tiny-dpo-<task>`` and
   ``<model>-dpo-<task>``);
7. validation of both recipes, the lock snapshots and the README catalogue.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunebook import catalog, compose, gpus, lock, paths, twins
from tunebook.data import checks as data_checks
from tunebook.data import formats, tokens
from tunebook.data import split as splitter
from tunebook.errors import CheckFailed, UserError
from tunebook.plan.estimate import estimate
from tunebook.schema import DataChecks
from tunebook.tasks import infer, scaffold
from tunebook.validate import validate_composed

MIN_ROWS = 100  # usable rows after cleaning: at least 10 for each of val and test
DEFAULT_MODEL = "mistral-7b-instruct-v0.2"  # the catalogue's 24 GB QLoRA choice
SHIPPED_TASKS = ("triage", "support", "clauses", "support-pref")
_SLUG = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
SEQUENCE_LENS = (256, 512, 1024, 2048, 4096, 8192)


@dataclass
class Created:
    """What ``new_task`` wrote and what to run next."""

    name: str
    kind: str
    files: list[Path] = field(default_factory=list)
    recipes: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)


def check_name(name: str, *, force: bool = False) -> None:
    """A lower-case slug that names nothing shipped (and nothing of the user's, unless force)."""
    if not name or "/" in name or "\\" in name or ".." in name:
        raise UserError(f"NAME={name!r}: a task name is a short lower-case slug such as "
                        "'emails' or 'refund-requests', not a path")
    if not _SLUG.match(name) or len(name) > 40:
        raise UserError(f"NAME={name!r}: expected a lower-case slug (letters, digits and "
                        "single hyphens, starting with a letter, at most 40 characters), "
                        "e.g. 'emails' or 'refund-requests'")
    if name in SHIPPED_TASKS or name in scaffold.regression_suites() or name.startswith("tiny"):
        raise UserError(f"NAME={name!r} is a shipped task or suite; choose another name")
    taken = [p for p in _paths_of(name) if p.exists()]
    if taken and not force:
        raise UserError(f"NAME={name!r} exists ({', '.join(paths.rel(p) for p in taken[:3])}); "
                        "choose another name, or pass FORCE=1 to make it again from DATA")


def _paths_of(name: str) -> list[Path]:
    return [paths.RECIPES / "task" / f"{name}.yaml", paths.EVAL_SUITES / name,
            paths.DATA_TEMPLATES / "datasets" / name, paths.RECIPES / f"tiny-lora-{name}.yaml",
            paths.RECIPES / f"tiny-dpo-{name}.yaml"]


def _recipe_prefix(model: str) -> str:
    """The short model name recipes use (``mistral7b``), from a catalogue recipe of ``model``."""
    for recipe in compose.recipe_names():
        text = (paths.RECIPES / f"{recipe}.yaml").read_text(encoding="utf-8")
        if re.search(rf"^\s*-\s*model:\s*{re.escape(model)}\s*$", text, re.M):
            return recipe.split("-")[0]
    return re.sub(r"[^a-z0-9.]", "", model.split("-instruct")[0].lower())


def _clean(rows: infer.Rows, kind: infer.Kind, log: Callable[[str], None]
           ) -> tuple[list[int], list[str], dict[str, Any]]:
    """The data checks over the rows: (indices kept, dropped lines, report facts)."""
    with tempfile.TemporaryDirectory(prefix="tunebook-new-task-") as tmp:
        file = Path(tmp) / "rows.jsonl"
        file.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows.rows),
                        encoding="utf-8")
        config = {"data": {"format": rows.format,
                           "labels": list(kind.labels) if kind.labels else None}}
        report = data_checks.check_path(file, config)
    rep = report.files[0]
    malformed = report.malformed()
    if malformed:
        shown = [f"{rows.where(p.line - 1)}: {p.code}: {p.message}" if p.line else
                 f"{paths.rel(rows.path)}: {p.code}: {p.message}" for p in malformed[:10]]
        more = f"\n... and {len(malformed) - 10} more" if len(malformed) > 10 else ""
        raise UserError(f"{paths.rel(rows.path)}: {len(malformed)} malformed row(s); fix them "
                        "(nothing was written):\n" + "\n".join(shown) + more)
    drop: dict[int, str] = {}
    for d in rep.exact_duplicates:
        drop[d["line"] - 1] = f"exact duplicate of {rows.where(d['of_line'] - 1)}"
    for d in rep.near_duplicates:
        drop.setdefault(d["line"] - 1, f"near duplicate of {rows.where(d['of_line'] - 1)} "
                                       f"({d['similarity']:.2f} similar)")
    dropped = [f"{rows.where(i)}: dropped, {why}" for i, why in sorted(drop.items())]
    kept = [i for i in range(len(rows.rows)) if i not in drop]
    checks = DataChecks()
    facts: dict[str, Any] = {"pii": [rows.where(x["line"] - 1) for x in rep.pii],
                             "max_pii": checks.max_pii}
    return kept, dropped, facts


def _imbalance(labels: list[str]) -> tuple[float, str]:
    counts = Counter(labels)
    hi, lo = max(counts.values()), min(counts.values())
    return round(hi / lo, 2), ", ".join(f"{k} {v}" for k, v in counts.most_common())


def _model_meta(model: str) -> dict[str, Any]:
    import yaml

    return yaml.safe_load((paths.RECIPES / "model" / f"{model}.yaml").read_text(
        encoding="utf-8"))["meta"]["model"]


def _tiny_tokenizer() -> Any:
    return twins.tokenizer_for({"axolotl": {"base_model": paths.rel(twins.tiny_base_link())},
                                "meta": {}}, full=False)


def _sequence_len(rows: list[dict], model: str) -> tuple[int, int, str]:
    """The smallest standard sequence_len that holds the longest row with every tokenizer the
    task trains with (the tiny base's, and the GPU model's: its own when cached here, else its
    family twin's), with 10% room."""
    meta = _model_meta(model)
    config = {"axolotl": {"base_model": meta["hub_id"]}, "meta": {"model": meta}}
    longest, names = 0, []
    for label, tokenizer in (("the tiny base", _tiny_tokenizer()),
                             (model, twins.tokenizer_for(config, full=False))):
        n = max(tokens.sequence_lengths(tokenizer, rows))
        longest = max(longest, n)
        names.append(f"{n} with {label}")
    need = math.ceil(longest * 1.1)
    fits = next((s for s in SEQUENCE_LENS if s >= need), None)
    if fits is None:
        raise CheckFailed(f"the longest row needs {longest} tokens ({'; '.join(names)}); longer "
                          f"than {SEQUENCE_LENS[-1]}: split such rows or drop them first")
    return fits, longest, "; ".join(names)


def _max_new_tokens(rows: list[dict], kind: str) -> int:
    """Room for the longest reference answer: tiny-base tokens of the replies, with 25%."""
    counts = tokens.count(_tiny_tokenizer(), infer.replies(rows), add_special=False)
    room = math.ceil(max(counts) * 1.25) + 4
    return int(min(512, max(8 if kind == "classification" else 32, room)))


def _gpu_for(model: str, config: dict[str, Any]) -> gpus.GPU:
    """The cheapest GPU of the table the planner says the composed QLoRA recipe fits on."""
    for gpu in sorted(gpus.table().values(), key=lambda g: (g.price_per_hour, g.memory_gb)):
        if gpu.id == "cpu" or not gpu.bf16:  # the qlora and dpo-lora methods train in bf16
            continue
        if estimate(config, gpu.id, suggest=False).fits:
            return gpu
    raise CheckFailed(f"MODEL={model}: no GPU of recipes/hardware/gpus.yaml fits it with QLoRA "
                      "at this task's sequence length; pick a smaller model")


def new_task(name: str, data: Path, *, source: str | None = None, kind: str | None = None,
             model: str | None = None, text_column: str | None = None,
             label_column: str | None = None, force: bool = False,
             log: Callable[[str], None] = print) -> Created:
    """Make task ``name`` from ``data``; every refusal happens before the first write."""
    check_name(name, force=force)
    model = model or DEFAULT_MODEL
    models = compose.group_options("model")
    if model not in models or model.startswith("tiny"):
        from tunebook.errors import did_you_mean

        raise UserError(f"MODEL={model!r}: expected a model option of recipes/model/"
                        f"{did_you_mean(model, models)}: "
                        f"{', '.join(m for m in models if not m.startswith('tiny'))}")
    rows = infer.read(data, source, text_column=text_column, label_column=label_column)
    for note in rows.notes:
        log(note)
    chosen = infer.infer_kind(rows, kind)
    log(f"kind: {chosen.kind} ({chosen.why})")
    kept, dropped, facts = _clean(rows, chosen, log)
    for line in dropped[:20]:
        log(line)
    if len(dropped) > 20:
        log(f"... and {len(dropped) - 20} more dropped")
    usable = [rows.rows[i] for i in kept]
    log(f"rows: {len(rows.rows)} read, {len(dropped)} duplicate(s) dropped, {len(usable)} usable")
    if len(usable) < MIN_ROWS:
        raise CheckFailed(f"{paths.rel(rows.path)}: {len(usable)} usable rows after dropping "
                          f"{len(dropped)} duplicate(s); a task needs at least {MIN_ROWS} "
                          "(10% of them are held out for evaluation): add rows")
    if facts["pii"]:
        log(f"personal data: {len(facts['pii'])} row(s) (data.checks.max_pii="
            f"{facts['max_pii']}), e.g. {', '.join(facts['pii'][:3])}: `make train` refuses "
            "them until they are removed or masked (or max_pii is raised with a # why)")
    labels = [infer.replies([r])[0] for r in usable] if chosen.kind == "classification" \
        else None
    # the split: leak-free, near-duplicate clusters together, stratified by label
    texts = [formats.row_text(r) for r in usable]
    where = splitter.assign(texts, labels, threshold=DataChecks().near_duplicate_threshold)
    parts = {s: [r for r, w in zip(usable, where, strict=True) if w == k]
             for k, s in enumerate(splitter.SPLITS)}
    prompt_file = paths.ROOT / f"data-templates/prompts/{name}-system.txt"
    spec = scaffold.TaskSpec(
        name=name, kind=chosen.kind, description=_description(name, chosen),
        source=_shown(data), rows=len(usable),
        split=tuple(len(parts[s]) for s in splitter.SPLITS), labels=chosen.labels)
    prompt = (prompt_file.read_text(encoding="utf-8") if force and prompt_file.is_file()
              else _existing_system_prompt(usable) or scaffold.system_prompt(spec, chosen.schema))
    with_prompt = {s: [_with_system(r, prompt) for r in part] for s, part in parts.items()}
    seq, longest, note = _sequence_len([r for s in splitter.SPLITS for r in with_prompt[s]],
                                       model)
    imbalance, imbalance_note = None, ""
    if labels:
        ratio, mix = _imbalance(labels)
        default = DataChecks().max_label_imbalance
        log(f"labels: {mix} (largest/smallest {ratio}; data.checks.max_label_imbalance "
            f"default {default})")
        if ratio > default:
            imbalance, imbalance_note = ratio, mix
            log(f"imbalance {ratio} > {default}: written into recipes/task/{name}.yaml as "
                "data.checks.max_label_imbalance so training can start; rebalancing helps the "
                "rare labels' recall")
    spec = scaffold.TaskSpec(
        **{**spec.__dict__, "sequence_len": seq, "longest": longest, "length_note": note,
           "max_new_tokens": _max_new_tokens(usable, chosen.kind),
           "max_label_imbalance": imbalance, "imbalance_note": imbalance_note})
    prefix = _recipe_prefix(model)
    gpu_recipe = scaffold.recipe_name(prefix, scaffold.methods(chosen.kind)[1], name)
    if (paths.RECIPES / f"{gpu_recipe}.yaml").exists() and not force:
        raise UserError(f"recipes/{gpu_recipe}.yaml exists; pass FORCE=1 to make it again")
    recipe_files = {
        Path("task") / f"{name}.yaml": scaffold.task_file(spec),
        Path(f"{spec.tiny_recipe}.yaml"): scaffold.tiny_recipe(
            spec, steps_per_epoch=max(1, math.ceil(spec.split[0] / 16))),
    }
    gpu = _checked_in_scratch(recipe_files, spec, model, prefix, gpu_recipe, log)
    recipe_files[Path(f"{gpu_recipe}.yaml")] = scaffold.gpu_recipe(
        spec, prefix=prefix, model=model, gpu_id=gpu.id, gpu_name=gpu.name,
        gpu_gb=gpu.memory_gb)
    files: dict[Path, str] = {
        paths.ROOT / spec.data_dir / f"{s}.jsonl":
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in with_prompt[s])
        for s in splitter.SPLITS}
    files[prompt_file] = prompt if prompt.endswith("\n") else prompt + "\n"
    if chosen.schema is not None:
        files[paths.ROOT / spec.schema_file] = json.dumps(chosen.schema, indent=2) + "\n"
    files[paths.EVAL_SUITES / name / f"{name}.yaml"] = scaffold.suite_file(spec)
    files.update({paths.RECIPES / rel: text for rel, text in recipe_files.items()})
    written = _write_all(files, name)
    created = Created(name=name, kind=chosen.kind, files=written,
                      recipes=[spec.tiny_recipe, gpu_recipe], dropped=dropped)
    lock.write_lock()
    catalog.update_readme(paths.ROOT / "README.md")
    created.next_steps = [f"make demo RECIPE={spec.tiny_recipe}      # the whole loop on a CPU",
                          f"make plan RECIPE={gpu_recipe} GPU={gpu.id}",
                          f"make train RECIPE={gpu_recipe}    # on the GPU machine"]
    return created


def _checked_in_scratch(recipe_files: dict[Path, str], spec: scaffold.TaskSpec, model: str,
                        prefix: str, gpu_recipe: str, log: Callable[[str], None]) -> gpus.GPU:
    """Compose and validate the new recipes in a scratch copy of recipes/ (so a refusal writes
    nothing) and pick the GPU of the QLoRA recipe with the planner."""
    with tempfile.TemporaryDirectory(prefix="tunebook-new-task-") as tmp:
        scratch = Path(tmp) / "recipes"
        shutil.copytree(paths.RECIPES, scratch, ignore=shutil.ignore_patterns(".lock"))
        files = {**recipe_files, Path(f"{gpu_recipe}.yaml"): scaffold.gpu_recipe(
            spec, prefix=prefix, model=model, gpu_id="rtx4090-24g", gpu_name="planning",
            gpu_gb=24)}
        for rel, text in files.items():
            (scratch / rel).write_text(text, encoding="utf-8")
        gpu_config = compose.compose_recipe(gpu_recipe, recipes_dir=scratch).config
        gpu = _gpu_for(model, gpu_config)
        for rel in files:
            if rel.parent == Path("."):
                validate_composed(compose.compose_recipe(rel.stem, recipes_dir=scratch,
                                                         with_sources=True), deep=False)
    log(f"planned: {gpu_recipe} on {gpu.name} ({gpu.id}), the cheapest GPU of "
        "recipes/hardware/gpus.yaml it fits")
    return gpu


def _write_all(files: dict[Path, str], name: str) -> list[Path]:
    """Write every file (each atomically); a re-made task's old splits are replaced whole."""
    data_dir = paths.DATA_TEMPLATES / "datasets" / name
    if data_dir.is_dir():
        shutil.rmtree(data_dir)
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return list(files)


def _shown(data: Path) -> str:
    return paths.rel(data) if paths.rel(data) != str(data.resolve()) else data.name


def _description(name: str, kind: infer.Kind) -> str:
    """One line saying what the task is, for headers, titles and the prompt draft."""
    what = name.replace("-", " ")
    if kind.kind == "classification":
        shown = ", ".join(kind.labels[:6]) + (", ..." if len(kind.labels) > 6 else "")
        return f"{what} sorted into {len(kind.labels)} labels ({shown})"
    return {"extraction": f"{what} extracted as JSON",
            "generation": f"{what} answered in free text",
            "preference": f"{what} preference pairs for DPO"}[kind.kind]


def _existing_system_prompt(rows: list[dict]) -> str | None:
    """The most common system message of the rows, when they carry one."""
    found = Counter(m["content"] for r in rows for m in (r.get("messages") or r.get("prompt")
                                                         or [])[:1]
                    if isinstance(m, dict) and m.get("role") == "system")
    return found.most_common(1)[0][0] if found else None


def _with_system(row: dict, prompt: str) -> dict:
    """The row with ``prompt`` as its system message (training sees what evaluation sends)."""
    key = "messages" if "messages" in row else "prompt"
    msgs = row.get(key) or []
    msgs = [{"role": "user", "content": msgs}] if isinstance(msgs, str) else list(msgs)
    system = {"role": "system", "content": prompt.strip()}
    if msgs and msgs[0].get("role") == "system":
        return row
    return {**row, key: [system, *msgs]}
