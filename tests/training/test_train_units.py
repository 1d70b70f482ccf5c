"""The parts of ``tunebook train`` that need no training: the data cache key, checkpoints,
the launch command, ``--dry-run`` and redaction (tier 1)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from trainhelp import RECIPE, manifest, runs_of, scratch_repo, tb

from tunebook import env, paths
from tunebook.errors import UserError
from tunebook.rundir import RunDir
from tunebook.training import cache, checkpoints, distributed, launch


def _ax(data, base):
    return {"datasets": [{"path": str(data), "type": "chat_template"}],
            "sequence_len": 256, "base_model": str(base)}


def test_prepared_path_follows_file_contents_tokenizer_and_keys(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "a"}]}\n', encoding="utf-8")
    base = tmp_path / "base"
    base.mkdir()
    (base / "tokenizer.json").write_text("{}", encoding="utf-8")
    first = cache.prepared_path(_ax(data, base))
    assert first == cache.prepared_path(_ax(data, base))  # stable
    assert first.parent.name == "prepared"
    data.write_text('{"messages": [{"role": "user", "content": "b"}]}\n', encoding="utf-8")
    second = cache.prepared_path(_ax(data, base))
    assert second != first  # same path, new contents: a new cache entry
    (base / "tokenizer.json").write_text('{"x": 1}', encoding="utf-8")
    third = cache.prepared_path(_ax(data, base))
    assert third != second
    ax = _ax(data, base)
    ax["sequence_len"] = 512
    assert cache.prepared_path(ax) != third
    ax = _ax(data, base)
    ax["learning_rate"] = 1.0  # does not change tokenized data
    assert cache.prepared_path(ax) == third


def test_last_complete_checkpoint_skips_a_half_written_one(tmp_path):
    out = tmp_path / "output"
    for step, complete in ((5, True), (10, True), (15, False)):
        ckpt = out / f"checkpoint-{step}"
        ckpt.mkdir(parents=True)
        (ckpt / "adapter_model.safetensors").write_bytes(b"x")
        if complete:
            (ckpt / "trainer_state.json").write_text("{}", encoding="utf-8")
    assert checkpoints.last_complete_checkpoint(out) == out / "checkpoint-10"
    assert [c.name for c in checkpoints.checkpoints(out)] == ["checkpoint-5", "checkpoint-10",
                                                        "checkpoint-15"]


def test_launch_command_single_process_seeds_and_names_the_config(tmp_path):
    run = RunDir(path=tmp_path, recipe="r", run_id="x")
    config = {"axolotl": {"seed": 7}, "launcher": {"kind": "single", "nnodes": 1,
                                                    "gpus_per_node": 1, "name": "single"}}
    cmd = launch.launch_command(run, config, distributed.topology(config),
                                resume_from="/tmp/ckpt")
    assert cmd[:3] == [sys.executable, "-m", "tunebook.training.child"]
    assert str(run.axolotl_yaml) in cmd
    assert cmd[cmd.index("--seed") + 1] == "7"
    assert cmd[cmd.index("--resume-from") + 1] == "/tmp/ckpt"


def test_metrics_summarise_the_trainer_log():
    result = {"global_step": 6, "max_steps": 6, "early_stopped": False, "log_history": [
        {"eval_loss": 3.0, "step": 0}, {"loss": 2.5, "step": 1}, {"eval_loss": 1.0, "step": 3},
        {"loss": 1.5, "step": 5}, {"eval_loss": 1.2, "step": 6}, {"train_runtime": 9.0}]}
    m = checkpoints.metrics_from(result)
    assert (m["first_eval_loss"], m["last_eval_loss"], m["best_eval_loss"]) == (3.0, 1.2, 1.0)
    assert m["train_loss"] == 1.5 and m["all_finite"] and m["steps"] == 6
    result["log_history"].append({"loss": float("nan"), "step": 7})
    assert not checkpoints.metrics_from(result)["all_finite"]


def test_resume_of_a_completed_run_is_refused(tmp_path):
    root = scratch_repo(tmp_path / "repo")
    run = root / "runs" / RECIPE / "20260101-000000-abcd"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"status": "completed"}), encoding="utf-8")
    r = tb(root, "train", "--resume", "last")
    assert r.code == 2 and "already completed" in r.err and "Traceback" not in r.text


def test_resume_refuses_overrides_that_would_change_the_run_and_force(tmp_path):
    root = scratch_repo(tmp_path / "repo")
    run = root / "runs" / RECIPE / "20260101-000000-abcd"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps(
        {"status": "interrupted", "overrides": ["axolotl.lora_r=8"]}), encoding="utf-8")
    r = tb(root, "train", "--resume", "last", "--overrides", "axolotl.lora_r=4")
    assert r.code == 2 and "'axolotl.lora_r=8'" in r.err and "'axolotl.lora_r=4'" in r.err
    r = tb(root, "train", "--resume", "last", "--force")
    assert r.code == 2 and "FORCE" in r.err and "Traceback" not in r.text


def test_dry_run_prints_the_command_and_keeps_secrets_out_of_the_manifest(tmp_path):
    root = scratch_repo(tmp_path / "repo")
    secret_env = "hf_fakeEnvToken0123456789"
    secret_override = "hf_fakeOverride0123456789"
    r = tb(root, "train", "--dry-run", "--overrides",
           f"+axolotl.max_steps=3 +axolotl.comet_api_key={secret_override}",
           env={"HF_TOKEN": secret_env})
    assert r.code == 0, r.text
    assert "command: " in r.out and "-m tunebook.training.child" in r.out and "config:  " in r.out
    (run,) = runs_of(root)
    m = manifest(run)
    assert m["status"] == "dry-run" and m["forced"] is False
    assert m["dataset_prepared_path"].startswith(str(root / ".cache" / "prepared"))
    for f in ("manifest.json", "resolved.yaml"):
        text = (run / f).read_text(encoding="utf-8")
        assert secret_env not in text and secret_override not in text, f
    assert "<redacted>" in (run / "manifest.json").read_text(encoding="utf-8")


def test_multi_node_topology_is_refused_until_a_distributed_launcher_is_wired(tmp_path):
    run = RunDir(path=tmp_path, recipe="r", run_id="x")
    config = {"axolotl": {}, "launcher": {"kind": "single", "nnodes": 1, "gpus_per_node": 1}}
    try:
        topo = distributed.topology(config, nnodes=2, node_rank=0, master_addr="h",
                                    master_port=29500, gpus_per_node=1)
        cmd = launch.launch_command(run, config, topo)
    except UserError as e:
        assert "node" in str(e)
    else:  # the scale-out launcher took over: it must name the topology
        assert "2" in " ".join(cmd)


@pytest.mark.parametrize("bad", ["nope"])
def test_unknown_family_has_a_clear_error(bad):
    from tunebook import twins

    with pytest.raises(UserError, match="families: gemma2, llama"):
        twins.twin_path(bad)


def test_scratch_repo_shares_the_cache(tmp_path):
    root = scratch_repo(tmp_path / "repo")
    assert (root / ".cache").resolve() == (paths.ROOT / ".cache").resolve()
    shutil.rmtree(root)


def test_child_goes_offline_for_local_bases_only_and_finds_the_venv(monkeypatch, tmp_path):
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(env, "_ADDED", set())
    env.quiet_environment()  # our own process never reaches the Hub
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    local = env.child_env(str(tmp_path))
    assert local["HF_HUB_OFFLINE"] == "1" and local["TRANSFORMERS_OFFLINE"] == "1"
    assert local["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert local["DO_NOT_TRACK"] == "1" and local["WANDB_MODE"] == "disabled"
    hub = env.child_env("no-such-org/no-such-model-in-cache")  # a GPU box must download it
    assert "HF_HUB_OFFLINE" not in hub
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(key, raising=False)


def test_the_work_before_the_launch_imports_neither_torch_nor_axolotl(tmp_path):
    """``make train`` pays the torch and Axolotl imports once, in the training process: its
    own checks (every key, the cross-field rules, the data gate with token lengths) and the
    rendering run without them, and a typo is still caught before anything is launched."""
    from tunebook import axolotl_schema, twins

    root = scratch_repo(tmp_path / "repo")
    twins.tiny_base_dir()  # built once in the shared cache (that build does import torch)
    axolotl_schema.axolotl_keys()  # the key index exists, as after any earlier validation
    code = (
        "import json, sys\n"
        "from tunebook import twins\n"
        "from tunebook.training import cache, render, run\n"
        "from tunebook.errors import UserError\n"
        "from tunebook.validate import validate_recipe\n"
        f"v = validate_recipe({RECIPE!r}, deep=False)\n"
        "config = v.config\n"
        "config['axolotl']['base_model'] = twins.ensure_base(config)\n"
        f"report = run.check_data(config, {RECIPE!r})\n"
        "extra = {'dataset_prepared_path': str(cache.prepared_path(config['axolotl']))}\n"
        "render.render(v, axolotl_extra=extra, run_id='no-imports')\n"
        "try:\n"
        f"    validate_recipe({RECIPE!r}, '+axolotl.lora_rr=8', deep=False)\n"
        "    caught = ''\n"
        "except UserError as e:\n"
        "    caught = str(e)\n"
        "print(json.dumps({'caught': caught, 'passed': report.passed,\n"
        "                  'tokenizer': report.tokenizer, 'tokens': report.files[0].tokens,\n"
        "                  'imported': sorted(m for m in sys.modules\n"
        "                                     if m.split('.')[0] in ('axolotl', 'torch'))}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "TUNEBOOK_ROOT": str(root)}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["imported"] == []
    assert out["passed"] and "tiny-llama" in out["tokenizer"] and out["tokens"]["max"] > 10
    assert "axolotl.lora_rr" in out["caught"] and "'lora_r'" in out["caught"]
    assert (root / "runs" / RECIPE / "no-imports" / "axolotl.yaml").is_file()
