"""``tunebook train`` with launchers, topologies and MLflow tracking, end to end.

Tier 1: ``--dry-run`` prints the exact multi-GPU / multi-node command (nothing runs).
Smoke: the embedded default trains on CPU and its run, params, metrics and gate verdict are
found in ``runs/mlflow.db``; the one-process torchrun path trains for real; a two-point sweep.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from clihelp import OFFLINE_ENV, run_tunebook
from tunebook import cli, paths, tracking
from tunebook.rundir import RunDir
from tunebook.training import distributed

RECIPE = "tiny-lora-triage"
# The embedded default, cut to a few steps (its base, data, method and task unchanged).
SHORT = "+axolotl.max_steps=6 axolotl.eval_steps=3 axolotl.save_steps=3 axolotl.logging_steps=1"


@pytest.fixture
def runs(tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr(paths, "RUNS", tmp_path / "runs")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.delenv(distributed.RUN_ID_ENV, raising=False)
    for key, value in OFFLINE_ENV.items():
        monkeypatch.setenv(key, value)
    return tmp_path / "runs"


def _dry_run(capsys, *args: str) -> tuple[list[str], RunDir]:
    assert cli.main(["train", "--dry-run", *args]) == 0
    out = capsys.readouterr().out
    config = next(line.split(":", 1)[1].strip() for line in out.splitlines()
                  if line.startswith("config:"))
    command = next(line.split(":", 1)[1].strip() for line in out.splitlines()
                   if line.startswith("command:"))
    return shlex.split(command), RunDir.open(Path(config).parent)


def test_dry_run_two_nodes_deepspeed(runs, capsys):
    cmd, run = _dry_run(capsys, "--recipe", "mistral7b-qlora-support", "--overrides",
                        "launcher=deepspeed-zero3", "--nnodes", "2", "--node-rank", "0",
                        "--master-addr", "10.0.0.4", "--gpus-per-node", "8")
    # the rendezvous id: a hash of what every node is given, i.e. the run's own overrides
    rid = distributed.rdzv_id("mistral7b-qlora-support", run.manifest()["overrides"],
                              distributed.Topology("deepspeed", 2, 8, 0, "10.0.0.4", 29500))
    assert rid.startswith("tb-")
    assert cmd == [distributed.axolotl_bin(), "train", str(run.axolotl_yaml), "--launcher",
                   "torchrun", "--", "--nnodes", "2", "--nproc_per_node", "8", "--node_rank",
                   "0", "--rdzv_backend", "c10d", "--rdzv_endpoint", "10.0.0.4:29500",
                   "--rdzv_id", rid]
    ax = yaml.safe_load(run.axolotl_yaml.read_text())
    assert Path(ax["deepspeed"]).is_absolute() and Path(ax["deepspeed"]).is_file()
    resolved = yaml.safe_load((run.path / "resolved.yaml").read_text())
    assert resolved["launcher"]["nnodes"] == 2 and resolved["launcher"]["gpus_per_node"] == 8
    assert run.manifest()["status"] == "dry-run"
    assert "mlflow_run_id" not in run.manifest()  # a dry run creates no MLflow run


def test_dry_run_node_one_differs_only_in_rank(runs, capsys):
    args = ["--recipe", "llama8b-lora-support", "--overrides", "launcher=fsdp2", "--nnodes",
            "2", "--master-addr", "gpu-a", "--master-port", "29400", "--gpus-per-node", "4"]
    cmd0, run0 = _dry_run(capsys, *args, "--node-rank", "0")
    cmd1, run1 = _dry_run(capsys, *args, "--node-rank", "1")
    assert cmd0[cmd0.index("--"):] != cmd1[cmd1.index("--"):]
    tail0, tail1 = cmd0[cmd0.index("--"):], cmd1[cmd1.index("--"):]
    assert tail0[tail0.index("--node_rank") + 1] == "0"
    assert tail1[tail1.index("--node_rank") + 1] == "1"
    del tail0[tail0.index("--node_rank") + 1], tail1[tail1.index("--node_rank") + 1]
    assert tail0 == tail1  # same rendezvous endpoint and id on both nodes
    assert "gpu-a:29400" in tail0
    assert yaml.safe_load(run0.axolotl_yaml.read_text())["fsdp_version"] == 2


def test_dry_run_one_node_ddp_is_standalone(runs, capsys):
    cmd, run = _dry_run(capsys, "--recipe", "qwen1.5b-full-triage", "--overrides",
                        "launcher=ddp", "--gpus-per-node", "4")
    assert cmd[1:] == ["train", str(run.axolotl_yaml), "--launcher", "torchrun", "--",
                       "--nnodes", "1", "--nproc_per_node", "4", "--standalone"]


def test_dry_run_single_keeps_the_in_process_launch(runs, capsys):
    cmd, run = _dry_run(capsys, "--recipe", RECIPE)
    assert cmd[1:4] == ["-m", "tunebook.training.child", str(run.axolotl_yaml)]


def test_dry_run_rendezvous_from_slurm_run_id(runs, capsys, monkeypatch):
    monkeypatch.setenv(distributed.RUN_ID_ENV, "slurm-77")
    cmd, _ = _dry_run(capsys, "--recipe", "llama8b-lora-support", "--overrides",
                      "launcher=deepspeed-zero2", "--nnodes", "3", "--node-rank", "2",
                      "--master-addr", "node001", "--gpus-per-node", "8")
    assert cmd[-2:] == ["--rdzv_id", "slurm-77"]
    assert cmd[cmd.index("--node_rank") + 1] == "2"


def test_single_launcher_on_many_gpus_is_refused():
    result = run_tunebook("train", "--recipe", "llama8b-lora-support", "--gpus-per-node", "4",
                          "--dry-run")
    assert result.code == 2 and "Traceback" not in result.text, result.text
    assert "launcher=ddp" in result.err


def test_multi_node_without_master_addr_is_refused():
    result = run_tunebook("train", "--recipe", "llama8b-lora-support", "--overrides",
                          "launcher=ddp", "--nnodes", "2", "--dry-run")
    assert result.code == 2 and "--master-addr" in result.err, result.text


# -- smoke: real training on CPU ----------------------------------------------------------------

def _client():
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking.tracking_uri())


@pytest.mark.smoke
@pytest.mark.slow
def test_train_default_recipe_is_tracked_in_mlflow(runs, capsys):
    assert cli.main(["train", "--recipe", RECIPE, "--overrides", SHORT]) == 0
    run = RunDir.open(next((runs / RECIPE).glob("*/manifest.json")).parent)
    manifest = run.manifest()
    assert manifest["status"] == "completed"
    run_id = manifest["mlflow_run_id"]
    assert (runs / "mlflow.db").is_file()
    got = _client().get_run(run_id)
    # params: our resolved recipe (flattened) and Axolotl's TrainingArguments
    assert got.data.params["axolotl.lora_r"] == "16"
    assert got.data.params["meta.model.name"] == "tiny-llama"
    assert "learning_rate" in got.data.params  # logged by Axolotl's MLflow integration
    # metrics: logged by Axolotl into *our* run (MLFLOW_RUN_ID), not a run of its own
    assert {"loss", "eval_loss"} <= set(got.data.metrics)
    history = _client().get_metric_history(run_id, "eval_loss")
    assert len(history) >= 2 and history[-1].value < history[0].value
    assert got.info.status == "FINISHED"
    assert len(_client().search_runs([got.info.experiment_id])) == 1
    artifacts = {a.path for a in _client().list_artifacts(run_id)}
    assert {"manifest.json", "axolotl.yaml", "resolved.yaml", "train.log", "adapter"} <= artifacts
    # the gate said no: recorded on the same run, and the registry refuses the adapter
    decision = {"decision": "do not ship", "ship": False, "reasons": ["no clear gain"]}
    run.update_manifest(gate=decision)
    assert tracking.record(run, gate=decision)
    assert _client().get_run(run_id).data.tags["tunebook.gate"] == "no-ship"
    assert cli.main(["register", "--run", str(run.path)]) == 1
    assert "rejected by the gate" in capsys.readouterr().err
    assert cli.main(["runs"]) == 0
    table = capsys.readouterr().out
    assert RECIPE in table and "no-ship" in table and "FINISHED" in table


@pytest.mark.smoke
@pytest.mark.slow
def test_torchrun_path_trains_one_process_on_cpu(runs):
    """The multi-GPU command for real, with one process: Axolotl's CLI, torchrun, our run."""
    assert cli.main(["train", "--recipe", RECIPE, "--overrides", f"launcher=ddp {SHORT}",
                     "--gpus-per-node", "1"]) == 0
    run = RunDir.open(next((runs / RECIPE).glob("*/manifest.json")).parent)
    manifest = run.manifest()
    assert manifest["launch_command"][1:5] == ["train", str(run.axolotl_yaml), "--launcher",
                                               "torchrun"]
    assert manifest["status"] == "completed"  # judged from the trainer state
    assert manifest["metrics"]["steps"] == 6
    got = _client().get_run(manifest["mlflow_run_id"])
    assert "eval_loss" in got.data.metrics and got.info.status == "FINISHED"


@pytest.mark.smoke
@pytest.mark.slow
def test_two_point_sweep_on_cpu(runs, capsys):
    code = cli.main(["sweep", "--recipe", RECIPE, "--overrides", SHORT, "--sweep",
                     "axolotl.learning_rate=5e-4,2e-3"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "sweep of tiny-lora-triage: 2 point(s)" in out
    rows = [line for line in out.splitlines() if "axolotl.learning_rate=" in line and "│" in line]
    assert len(rows) == 2
    runs_ = tracking.recent_runs(recipe=RECIPE)
    assert len(runs_) == 2
    losses = sorted(r["eval_loss"] for r in runs_)
    assert all(loss is not None for loss in losses)
    # the table is ordered by validation loss: the first row holds the lower one
    assert f"{losses[0]:.4f}" in rows[0] and f"{losses[1]:.4f}" in rows[1]
    tags = [_client().get_run(r["run_id"]).data.tags for r in runs_]
    assert len({t["tunebook.sweep"] for t in tags}) == 1
    assert {t["tunebook.sweep.point"] for t in tags} == {"axolotl.learning_rate=0.0005",
                                                         "axolotl.learning_rate=0.002"}
    json.dumps(runs_)  # plain data


@pytest.mark.smoke
@pytest.mark.slow
def test_demo_loop_is_one_mlflow_run_and_registers_when_shipped(runs, capsys):
    """train -> eval -> gate -> report through the real evaluation code, all in one MLflow run."""
    from tunebook import demo

    code = demo.run_demo()
    capsys.readouterr()
    run = RunDir.open(next((runs / RECIPE).glob("2*/manifest.json")).parent)
    manifest = run.manifest()
    got = _client().get_run(manifest["mlflow_run_id"])
    metrics, tags = got.data.metrics, got.data.tags
    assert {"loss", "eval_loss", "eval/triage/acc", "gate/ship"} <= set(metrics)
    word = tracking.verdict(manifest["gate"])
    assert tags["tunebook.gate"] == word and metrics["gate/ship"] == (word == "ship")
    artifacts = {a.path for a in _client().list_artifacts(got.info.run_id)}
    assert {"report.html", "gate.json", "eval", "adapter", "manifest.json"} <= artifacts
    assert cli.main(["register", "--run", str(run.path)]) == (0 if word == "ship" else 1)
    versions = _client().search_model_versions(f"name='{RECIPE}'")
    assert len(versions) == (1 if word == "ship" else 0)
    assert code == (0 if word == "ship" else 1)


@pytest.mark.smoke
@pytest.mark.slow
def test_interrupted_then_resumed_run_stays_one_mlflow_run(runs):
    """Ctrl-C after a checkpoint, then --resume last: the same MLflow run continues."""
    import signal
    import time

    script = ("import sys; from pathlib import Path; from tunebook import paths, cli; "
              f"paths.RUNS = Path({str(runs)!r}); sys.exit(cli.main(sys.argv[1:]))")
    overrides = ("+axolotl.max_steps=12 axolotl.eval_steps=3 axolotl.save_steps=3 "
                 "axolotl.logging_steps=1")
    env = {**os.environ, **OFFLINE_ENV}
    proc = subprocess.Popen([sys.executable, "-c", script, "train", "--recipe", RECIPE,
                             "--overrides", overrides], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list(runs.glob(f"{RECIPE}/*/output/checkpoint-6/trainer_state.json")):
        assert proc.poll() is None and time.time() < deadline, "no checkpoint-6 appeared"
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    run = RunDir.open(next(runs.glob(f"{RECIPE}/*/manifest.json")).parent)
    assert run.manifest()["status"] == "interrupted"
    run_id = run.manifest()["mlflow_run_id"]
    assert _client().get_run(run_id).info.status == "KILLED"
    resumed = subprocess.run([sys.executable, "-c", script, "train", "--recipe", RECIPE,
                              "--resume", "last"], env=env, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert run.manifest()["status"] == "completed"
    exp = _client().get_run(run_id).info.experiment_id
    assert len(_client().search_runs([exp])) == 1  # no second run from the resumed trainer
    steps = [m.step for m in _client().get_metric_history(run_id, "eval_loss")]
    assert max(steps) == 12 and min(steps) == 0
    assert _client().get_run(run_id).info.status == "FINISHED"
