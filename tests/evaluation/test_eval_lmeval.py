"""The suites through the real lm-evaluation-harness on a tiny twin, and the refusal to compare
evaluations whose prompts or suite versions differ."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tunebook import cli, paths, twins
from tunebook.errors import UserError
from tunebook.evaluation import harness as evaluate
from tunebook.validate import validate_recipe

ALL_SUITES = ["triage", "support", "clauses", "general-guard", "format", "edge-cases", "safety"]
KEY_ORDER = ["include", "task", "tag", "dataset_path", "dataset_name", "dataset_kwargs",
             "output_type", "training_split", "validation_split", "test_split", "fewshot_split",
             "process_docs", "num_fewshot", "doc_to_text", "doc_to_target", "doc_to_choice",
             "generation_kwargs", "filter_list", "process_results", "metric_list", "metadata"]


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


def suite_files() -> list[Path]:
    return sorted(paths.EVAL_SUITES.rglob("*.yaml"))


@pytest.mark.parametrize("file", suite_files(), ids=lambda p: p.stem)
def test_suite_yaml_conventions(file: Path):
    """A header comment, metadata.version, lm-eval's key order, data inside the repository."""
    text = file.read_text()
    assert text.startswith("# "), "a task file opens with a comment saying what it is"
    cfg = yaml.load(text, Loader=_Loader)
    if file.parent.name == "_kinds":  # a kind template: what task suites include, not a task
        assert "task" not in cfg and "metadata" not in cfg and "process_results" in cfg
    else:
        assert "version" in cfg["metadata"]
    keys = [k for k in cfg if k in KEY_ORDER]
    assert keys == sorted(keys, key=KEY_ORDER.index), f"key order: {keys}"
    for p in ((cfg.get("dataset_kwargs") or {}).get("data_files") or {}).values():
        assert (paths.ROOT / p).is_file(), p


def test_every_suite_is_indexed_with_its_version():
    tm = evaluate.task_manager()
    assert set(ALL_SUITES) <= set(tm.all_tasks)
    for name in ALL_SUITES:
        file = Path(tm.task_index[name]["yaml_path"])
        declared = yaml.load(file.read_text(), Loader=_Loader)["metadata"]["version"]
        assert evaluate._suite_config(tm, name)["metadata"]["version"] == declared


def twin_config(suites: list[str]) -> dict:
    config = validate_recipe("mistral7b-lora-triage", None, axolotl=False).config
    config["axolotl"]["base_model"] = str(twins.twin_dir("llama"))
    config["eval"]["suites"] = suites
    config["eval"]["limit"] = 3
    return config


# Each task's suite is scored by that task's kind: one recipe per task, with the regression
# suites on the triage recipe.
RUNS = {
    "mistral7b-lora-triage": (["triage", "general-guard", "format", "edge-cases", "safety"],
                              "You triage Voltline support tickets"),
    "qwen1.5b-lora-support": (["support"], "You are Voltline's customer support assistant"),
    "qwen7b-lora-clauses": (["clauses"], "You extract key terms from a contract excerpt"),
}
METRICS = {"triage": {"acc", "valid", "macro_precision", "macro_recall", "macro_f1"},
           "support": {"rougeL", "chrf", "bleu", "brand_ok", "policy_ok", "signoff"},
           "clauses": {"json_valid", "schema_valid", "field_precision", "field_recall",
                       "field_f1", "exact_match"},
           "general-guard": {"acc", "acc_norm"}, "format": {"format_ok"},
           "edge-cases": {"robust"}, "safety": {"refusal"}}


@pytest.mark.slow
@pytest.mark.parametrize("recipe", sorted(RUNS))
def test_every_suite_runs_through_lm_eval_on_a_twin(tmp_path: Path, recipe: str):
    suites, system = RUNS[recipe]
    config = validate_recipe(recipe, None, axolotl=False).config
    config["axolotl"]["base_model"] = str(twins.twin_dir("llama"))
    config["eval"]["suites"] = suites
    config["eval"]["limit"] = 3
    if recipe.endswith("triage"):
        config["eval"]["few_shot"] = 2  # the primary suite gets two training examples
    model = config["axolotl"]["base_model"]
    tm = evaluate.task_manager()
    spec = evaluate.build_spec(config, evaluate.load_tokenizer(model), tm)
    out = evaluate.run_suites(config, evaluate.load_lm(model), spec, tmp_path, tm)
    expected = {s: METRICS[s] for s in suites}
    assert {s: set(m) for s, m in out["metrics"].items()} == expected
    results = json.loads((tmp_path / "results.json").read_text())
    for suite in suites:
        file = Path(tm.task_index[suite]["yaml_path"])
        declared = yaml.load(file.read_text(), Loader=_Loader)["metadata"]["version"]
        assert results["versions"][suite] == declared
    if recipe.endswith("triage"):
        assert results["n-shot"]["triage"] == 2
    for suite, metrics in expected.items():
        rows = [json.loads(x) for x in (tmp_path / f"samples_{suite}.jsonl").read_text().split("\n")
                if x]
        assert len(rows) == 3
        for row in rows:
            assert row["doc_hash"] and row["prompt_hash"]
            per_item = [m for m in metrics if isinstance(row[m], float)]
            assert per_item, f"{suite} has no per-item metric to pair on"
            # the task's system prompt reached the chat-templated prompt
            prompt = json.dumps(row["arguments"])
            assert system in prompt
            if suite == "triage":  # few-shot answers arrive as assistant turns
                assert prompt.count("assistant<|end_header_id|>") == 2 + 1, prompt


def test_another_tasks_suite_is_refused_with_the_fix(capsys):
    config = validate_recipe("mistral7b-lora-triage", None, axolotl=False).config
    config["eval"]["suites"] = ["triage", "support"]
    with pytest.raises(UserError, match="support is another task's suite"):
        evaluate.task_overrides(config, evaluate.task_manager())


def test_a_prompting_arm_scores_its_suite_as_the_baseline_does():
    """The 3-shot arm evaluates the primary suite alone: its scoring hash for that suite is the
    0-shot baseline's, and only its prompts differ (ship_gate.check_arm compares them)."""
    config = validate_recipe("tiny-lora-triage", None, axolotl=False).config
    tokenizer = evaluate.load_tokenizer(str(twins.twin_dir("llama")))
    base = evaluate.build_spec(config, tokenizer)
    arm = evaluate.build_spec(evaluate.arm_config(config, 3), tokenizer)
    assert set(base.code) == set(config["eval"]["suites"]) and list(arm.code) == ["triage"]
    assert arm.code["triage"] == base.code["triage"]
    assert len(set(base.code.values())) == len(base.code)  # each suite its own files
    assert arm.prompt_hash != base.prompt_hash


def _fake_run(tmp_path: Path, config: dict) -> Path:
    run = tmp_path / "runs" / "zz-mismatch" / "20260101-000000-beef"
    (run / "output").mkdir(parents=True)
    (run / "output" / "adapter_config.json").write_text("{}")
    (run / "resolved.yaml").write_text(yaml.safe_dump(config))
    (run / "axolotl.yaml").write_text(yaml.safe_dump(
        {"base_model": config["axolotl"]["base_model"], "output_dir": str(run / "output")}))
    (run / "manifest.json").write_text(json.dumps({"recipe": "zz-mismatch"}))
    return run


def _write_baseline(config: dict, **spec_changes) -> Path:
    model = config["axolotl"]["base_model"]
    spec = evaluate.build_spec(config, evaluate.load_tokenizer(model))
    for k, v in spec_changes.items():
        setattr(spec, k, v)
    mid = evaluate.model_id(model)
    out = evaluate.baseline_root("zz-mismatch") / "old"
    out.mkdir(parents=True, exist_ok=True)
    evaluate.write_meta(out, kind="baseline", model=mid, spec=spec.to_json(),
                        key=evaluate.baseline_key(mid, spec))
    return out


@pytest.mark.parametrize(("change", "message"), [
    ({"system_prompt": "You are a pirate."}, "prompt hash"),
    ({"versions": {"triage": "0.9", "general-guard": "1.0", "format": "1.0",
                   "edge-cases": "1.0", "safety": "1.0"}},
     "suite triage version 0.9 (baseline) vs 2.0 (now)"),
])
def test_eval_refuses_a_baseline_with_other_prompts_or_suites(tmp_path, monkeypatch, capsys,
                                                              change, message):
    monkeypatch.setattr(paths, "RUNS", tmp_path / "runs")
    config = twin_config(["triage", "general-guard", "format", "edge-cases", "safety"])
    run = _fake_run(tmp_path, config)
    _write_baseline(config, **change)
    assert cli.main(["eval", "--run", str(run)]) == 2
    err = capsys.readouterr().err
    assert message in err and "make baseline RECIPE=zz-mismatch" in err
    assert "Traceback" not in err


def test_eval_without_any_baseline_says_what_to_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(paths, "RUNS", tmp_path / "runs")
    run = _fake_run(tmp_path, twin_config(["triage"]))
    assert cli.main(["eval", "--run", str(run)]) == 2
    assert "no baseline of" in capsys.readouterr().err


def test_scoring_code_hash_ignores_comments_but_not_values(tmp_path: Path):
    a, b, c = (tmp_path / f"{x}.yaml" for x in "abc")
    a.write_text("task: t\nprocess_results: !function utils.fn\nmax_gen_toks: 8\n")
    b.write_text("# a comment\ntask: t  # same task\nprocess_results: !function utils.fn\n"
                 "max_gen_toks:   8\n")
    c.write_text("task: t\nprocess_results: !function utils.other\nmax_gen_toks: 8\n")
    assert evaluate._code_bytes(a) == evaluate._code_bytes(b)
    assert evaluate._code_bytes(a) != evaluate._code_bytes(c)


def test_baseline_of_a_hub_model_offline_is_a_user_error(capsys):
    assert cli.main(["baseline", "--recipe", "mistral7b-lora-triage"]) == 2
    err = capsys.readouterr().err
    assert "mistralai/Mistral-7B-Instruct-v0.2" in err and "+profile=cpu-smoke" in err


def test_unknown_suite_names_the_closest(capsys):
    over = "eval.suites.edge-cases=false +eval.suites.edge-case=true"
    assert cli.main(["baseline", "--recipe", "tiny-lora-triage", "--overrides", over]) == 2
    assert "unknown suite 'edge-case' (did you mean 'edge-cases'?)" in capsys.readouterr().err


def test_a_list_of_suites_is_refused_with_the_mapping_syntax(capsys):
    """eval.suites is a mapping (the shared regression suites merge into it): a list override
    gets told how to add or drop one."""
    over = "eval.suites=[triage,safety]"
    assert cli.main(["baseline", "--recipe", "tiny-lora-triage", "--overrides", over]) == 2
    err = capsys.readouterr().err
    assert "eval.suites is a mapping" in err and "eval.suites.<name>=false" in err
