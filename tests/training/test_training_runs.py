"""``tunebook train`` end to end through the real Axolotl on CPU (smoke tier).

Every test trains the embedded default (``tiny-lora-triage``) in a scratch repository: the
default run learns, two runs give the same adapter bytes, the manifest holds no secrets, an
edited dataset is re-tokenized, a killed run resumes from its last complete checkpoint, Ctrl-C
is recorded as interrupted, a crash is recorded as failed, a config Axolotl rejects is a clear
error, and a merged model equals base + adapter.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest
from trainhelp import RECIPE, SHORT, manifest, runs_of, scratch_repo, sha, tb, tb_popen, wait_for

pytestmark = [pytest.mark.smoke, pytest.mark.xdist_group("training")]


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return scratch_repo(tmp_path_factory.mktemp("training") / "repo")


def _new_run(root: Path, before: list[Path]) -> Path:
    (run,) = [r for r in runs_of(root) if r not in before]
    return run


def _triage_accuracy(base: str, adapter: Path, rows: list[dict]) -> tuple[float, float]:
    """Greedy-generated label accuracy of the base and of base + adapter on ``rows``."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(adapter)

    def accuracy(model) -> float:
        hits = 0
        for row in rows:
            enc = tok.apply_chat_template(row["messages"][:-1], add_generation_prompt=True,
                                          return_tensors="pt", return_dict=True)
            with torch.no_grad():
                out = model.generate(**enc, max_new_tokens=6, do_sample=False)
            text = tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            hits += text.strip() == row["messages"][-1]["content"]
        return hits / len(rows)

    base_acc = accuracy(AutoModelForCausalLM.from_pretrained(base))
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(adapter))
    return base_acc, accuracy(tuned)


@pytest.mark.slow
def test_the_default_recipe_trains_on_cpu_and_learns(repo):
    """`make train` with no RECIPE: validation loss clearly drops and the labels are learned."""
    before = runs_of(repo)
    t0 = time.perf_counter()
    r = tb(repo, "train")
    took = time.perf_counter() - t0
    assert r.code == 0, r.text
    run = _new_run(repo, before)
    for line in ("run:       runs/tiny-lora-triage/", "val loss:  start ", "adapter:   "):
        assert line in r.out, r.out
    m = manifest(run)
    metrics = m["metrics"]
    assert m["status"] == "completed" and m["adapter"] == str(run / "output")
    assert metrics["last_eval_loss"] < metrics["first_eval_loss"] / 5, metrics
    assert metrics["eval_steps"][0] == 0  # the start is measured before any update
    assert (run / "output" / "adapter_model.safetensors").is_file()
    print(f"make train: {took:.0f} s wall (target <= 180 s on an idle 2-core machine)")
    rows = [json.loads(line) for line in
            (repo / "data-templates/datasets/triage/test.jsonl").read_text().splitlines()]
    ax = json.loads(json.dumps(__import__("yaml").safe_load((run / "axolotl.yaml").read_text())))
    base_acc, tuned_acc = _triage_accuracy(ax["base_model"], run / "output", rows)
    assert base_acc <= 0.3 and tuned_acc >= 0.8, (base_acc, tuned_acc)


@pytest.fixture(scope="module")
def two_short_runs(repo) -> tuple[Path, Path]:
    """Two short runs of the same recipe, data and seed; the first with a token around."""
    secret = "hf_fakeOverride0123456789"
    before = runs_of(repo)
    r = tb(repo, "train", "--overrides", f"{SHORT} +axolotl.comet_api_key={secret}",
           env={"HF_TOKEN": "hf_fakeEnvToken0123456789"})
    assert r.code == 0, r.text
    first = _new_run(repo, before)
    before = runs_of(repo)
    r = tb(repo, "train", "--overrides", SHORT)
    assert r.code == 0, r.text
    return first, _new_run(repo, before)


def test_same_recipe_data_and_seed_give_a_bit_identical_adapter(two_short_runs):
    a, b = two_short_runs
    name = "adapter_model.safetensors"
    assert sha(a / "output" / name) == sha(b / "output" / name)


def test_the_train_log_holds_no_notice_meant_for_library_authors(two_short_runs):
    run, _ = two_short_runs
    log = (run / "train.log").read_text()
    assert "train_runtime" in log  # the trainer's own lines are there
    assert "_pytree.py" not in log  # torch's Enum-registration deprecation (env.py)


def test_manifest_records_the_run_and_never_a_secret(two_short_runs):
    run, _ = two_short_runs
    m = manifest(run)
    assert m["status"] == "completed" and m["started"] and m["ended"]
    assert m["adapter"] == str(run / "output") and m["resumed_from"] is None
    assert m["log"] == str(run / "train.log") and (run / "train.log").stat().st_size > 0
    assert m["forced"] is False and m["data_gate"]["passed"] is True
    metrics = m["metrics"]
    for key in ("train_loss", "first_eval_loss", "last_eval_loss", "best_eval_loss"):
        assert isinstance(metrics[key], float), key
    assert metrics["steps"] == metrics["max_steps"] == 8
    assert m["git"] and m["packages"]["axolotl"] == "0.19.0" and m["data_files"]
    text = (run / "manifest.json").read_text(encoding="utf-8")
    assert "hf_fake" not in text and "<redacted>" in text
    assert "hf_fake" not in (run / "resolved.yaml").read_text(encoding="utf-8")


def test_merged_model_equals_base_plus_adapter(repo, two_short_runs):
    import torch
    import yaml
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, run = two_short_runs
    r = tb(repo, "merge", "--run", str(run))
    assert r.code == 0, r.text
    merged = run / "merged"
    assert f"vllm serve {merged}" in r.out
    for name in ("model.safetensors", "config.json", "tokenizer.json", "chat_template.jinja"):
        assert (merged / name).is_file(), name
    assert manifest(run)["merged"] == str(merged)
    base = yaml.safe_load((run / "axolotl.yaml").read_text())["base_model"]
    tok = AutoTokenizer.from_pretrained(merged)
    ids = tok("My laptop charger is smoking and smells of burning.", return_tensors="pt")
    with torch.no_grad():
        want = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base),
                                         str(run / "output"))(**ids).logits
        got = AutoModelForCausalLM.from_pretrained(merged)(**ids).logits
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()
    # the adapter changed the model: the check can fail
    with torch.no_grad():
        plain = AutoModelForCausalLM.from_pretrained(base)(**ids).logits
    assert (plain - want).abs().max() > 1e-3


def test_an_edited_dataset_is_tokenized_again(repo):
    """Axolotl's own cache key ignores file contents; ours hashes them."""
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    data = repo / "data-templates/datasets/triage/train.jsonl"
    overrides = "+axolotl.max_steps=2 axolotl.eval_steps=2 axolotl.save_steps=2"
    r = tb(repo, "train", "--dry-run", "--overrides", overrides)
    assert r.code == 0, r.text
    first = manifest(runs_of(repo)[-1])["dataset_prepared_path"]
    rows = data.read_text(encoding="utf-8").splitlines()
    row = json.loads(rows[0])
    row["messages"][1]["content"] = "Zebra quokka marmalade: my order never arrived."
    data.write_text("\n".join([json.dumps(row), *rows[1:]]) + "\n", encoding="utf-8")
    before = runs_of(repo)
    r = tb(repo, "train", "--overrides", overrides)
    assert r.code == 0, r.text
    run = _new_run(repo, before)
    second = manifest(run)["dataset_prepared_path"]
    assert second != first
    tok = AutoTokenizer.from_pretrained(run / "output")
    prepared = [p.parent for p in Path(second).rglob("dataset_info.json")]  # train and val
    assert prepared
    texts = [tok.decode(x["input_ids"]) for d in prepared for x in load_from_disk(str(d))]
    assert any("Zebra quokka marmalade" in t for t in texts)


def _files(run: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(run)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(run.rglob("*")) if p.is_file()}


def _training_child(pid: int) -> int:
    """The training process ``tunebook train`` (``pid``) started."""
    (child,) = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return int(child)


def test_one_writer_a_live_run_is_refused_a_killed_one_taken_over_and_resumed(repo):
    """A run in training refuses a concurrent RESUME=last (exit 2, nothing written); killed with
    SIGKILL, it is taken over and resumed from its last complete checkpoint."""
    overrides = ("+axolotl.max_steps=24 axolotl.eval_steps=4 axolotl.save_steps=4 "
                 "axolotl.early_stopping_patience=100")
    before = runs_of(repo)
    proc = tb_popen(repo, "train", "--overrides", overrides)
    wait_for(lambda: len(runs_of(repo)) > len(before), 300, "the run directory", proc)
    run = _new_run(repo, before)
    out = run / "output"
    wait_for(lambda: (out / "checkpoint-8" / "trainer_state.json").is_file(), 300,
             "checkpoint-8", proc)
    child = _training_child(proc.pid)
    os.killpg(child, signal.SIGSTOP)  # frozen mid-run: alive, holding the run, writing nothing
    os.killpg(proc.pid, signal.SIGSTOP)
    try:
        files = _files(run)
        r = tb(repo, "train", "--resume", "last", "--overrides", overrides)
        assert r.code == 2 and "Traceback" not in r.text, r.text
        assert f"pid {proc.pid} on host {socket.gethostname()}" in r.err, r.err
        assert _files(run) == files  # refused before writing anything
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # no handler runs; the Axolotl child dies with it
        os.killpg(child, signal.SIGKILL)
        proc.wait()
    time.sleep(2)
    assert manifest(run)["status"] == "running"  # nobody could record anything
    half = out / "checkpoint-9999"  # a half-written newest checkpoint: no trainer_state.json
    half.mkdir()
    (half / "adapter_model.safetensors").write_bytes(b"partial")
    r = tb(repo, "train", "--resume", "last", "--overrides", overrides)  # as Slurm requeues
    assert r.code == 0, r.text
    assert f"pid {proc.pid} on host {socket.gethostname()}" in r.out
    assert "killed or crashed" in r.out and "takes it over" in r.out
    assert "skipping incomplete checkpoint" in r.out
    m = manifest(run)
    assert m["status"] == "completed" and m["metrics"]["steps"] == 24
    resumed = Path(m["resumed_from"])
    assert resumed.parent == out and resumed.name != "checkpoint-9999"
    assert int(resumed.name.split("-")[1]) >= 8 and m["resumes"] == 1
    assert not (run / "run.lock.json").exists()  # released cleanly at the end


def test_an_axolotl_key_the_recipe_does_not_set_needs_no_plus(repo):
    """`make train OVERRIDES="axolotl.max_steps=1"`: Axolotl's own key, as users type it."""
    before = runs_of(repo)
    r = tb(repo, "train", "--overrides", "axolotl.max_steps=1")
    assert r.code == 0, r.text
    m = manifest(_new_run(repo, before))
    assert m["status"] == "completed" and m["metrics"]["steps"] == 1, m["metrics"]
    assert "(step 1/1" in r.out


def test_ctrl_c_is_recorded_as_interrupted_not_finished(repo):
    before = runs_of(repo)
    proc = tb_popen(repo, "train", "--overrides",
                    "+axolotl.max_steps=400 axolotl.eval_steps=4 axolotl.save_steps=4 "
                    "axolotl.early_stopping_patience=1000")
    wait_for(lambda: len(runs_of(repo)) > len(before), 300, "the run directory", proc)
    run = _new_run(repo, before)
    wait_for(lambda: (run / "output" / "checkpoint-4").is_dir(), 300, "a first step", proc)
    os.kill(proc.pid, signal.SIGINT)  # what Ctrl-C sends to the foreground process
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130, out
    m = manifest(run)
    assert m["status"] == "interrupted" and m["adapter"] is None
    assert m["metrics"]["steps"] < 400
    assert "RESUME=last" in out


def test_a_crash_inside_axolotl_is_recorded_as_failed(repo):
    before = runs_of(repo)
    r = tb(repo, "train", "--overrides", "axolotl.lora_target_modules=[no_such_proj]")
    assert r.code == 1, r.text
    run = _new_run(repo, before)
    assert manifest(run)["status"] == "failed"
    assert "training failed" in r.err and f"runs/{RECIPE}/{run.name}" in r.err
    assert "No modules were targeted" in r.err  # the log tail names the cause
    assert "Traceback" not in r.err.split("last lines of")[0]


def test_a_config_axolotl_rejects_is_a_clear_error_not_a_crash(repo):
    """``train`` leaves Axolotl's validate_config to the training process (which imports Axolotl
    anyway); a rejection there is still exit 2 with the key named, and is never resumable."""
    before = runs_of(repo)
    r = tb(repo, "train", "--overrides", "+axolotl.warmup_steps=10")  # beside warmup_ratio
    assert r.code == 2, r.text
    assert f"recipe {RECIPE}: Axolotl rejects the config" in r.err and "warmup" in r.err
    assert "Traceback" not in r.text
    run = _new_run(repo, before)
    m = manifest(run)
    assert m["status"] == "invalid" and m["adapter"] is None
    assert not m["metrics"].get("steps")  # nothing trained
    assert not (run / "output" / "adapter_model.safetensors").exists()
    r = tb(repo, "train", "--resume", str(run))
    assert r.code == 2 and "never trained" in r.err, r.text


def test_a_failing_data_gate_refuses_unless_forced_and_force_is_recorded(tmp_path):
    root = scratch_repo(tmp_path / "repo")
    data = root / "data-templates/datasets/triage/train.jsonl"
    rows = data.read_text(encoding="utf-8").splitlines()
    data.write_text("\n".join([*rows, rows[0], rows[1]]) + "\n", encoding="utf-8")  # duplicates
    r = tb(root, "train", "--overrides", SHORT)
    assert r.code == 1, r.text
    assert "FORCE=1" in r.err and "Traceback" not in r.text
    assert runs_of(root) == []  # nothing rendered, no GPU time spent
    r = tb(root, "train", "--force", "--overrides", SHORT)
    assert r.code == 0, r.text
    (run,) = runs_of(root)
    m = manifest(run)
    assert m["forced"] is True and m["data_gate"]["passed"] is False
    assert m["status"] == "completed"
