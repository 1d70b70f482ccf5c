"""Multi-GPU and multi-node launch commands (``tunebook.training.distributed``), asserted exactly.

Multi-process training cannot run on a CPU-only machine, so these check the commands; one
smoke test runs the one-process torchrun path for real (test_train_distributed_cpu)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunebook.compose import compose_recipe
from tunebook.errors import UserError
from tunebook.rundir import RunDir
from tunebook.training import checkpoints, distributed

AXOLOTL = distributed.axolotl_bin()


def _config(overrides: str) -> dict:
    return compose_recipe("llama8b-lora-support", overrides).config


def _run(tmp_path: Path) -> RunDir:
    path = tmp_path / "llama8b-lora-support" / "r1"
    path.mkdir(parents=True)
    return RunDir(path=path, recipe="llama8b-lora-support", run_id="r1")


@pytest.fixture(autouse=True)
def _no_run_id_env(monkeypatch):
    monkeypatch.delenv(distributed.RUN_ID_ENV, raising=False)


def test_one_node_eight_gpus_is_standalone_torchrun(tmp_path):
    run = _run(tmp_path)
    topo = distributed.topology(_config("launcher=deepspeed-zero3"))
    assert (topo.nnodes, topo.gpus_per_node, topo.world_size) == (1, 8, 8)
    assert distributed.command(run, topo) == [
        AXOLOTL, "train", str(run.axolotl_yaml), "--launcher", "torchrun", "--",
        "--nnodes", "1", "--nproc_per_node", "8", "--standalone"]


def test_two_nodes_rendezvous_on_node_zero(tmp_path):
    run = _run(tmp_path)
    cfg = _config("launcher=deepspeed-zero3")
    topo = distributed.topology(cfg, nnodes=2, node_rank=0, master_addr="10.0.0.4",
                                gpus_per_node=8)
    cmd = distributed.command(run, topo, overrides=["launcher=deepspeed-zero3"])
    rid = cmd[-1]
    assert cmd == [
        AXOLOTL, "train", str(run.axolotl_yaml), "--launcher", "torchrun", "--",
        "--nnodes", "2", "--nproc_per_node", "8", "--node_rank", "0",
        "--rdzv_backend", "c10d", "--rdzv_endpoint", "10.0.0.4:29500", "--rdzv_id", rid]
    # node 1 gets the same rendezvous id from the same command line, and only its rank differs
    topo1 = distributed.topology(cfg, nnodes=2, node_rank=1, master_addr="10.0.0.4",
                                 gpus_per_node=8)
    cmd1 = distributed.command(run, topo1, overrides=["launcher=deepspeed-zero3"])
    assert [a for a in cmd1 if a != "1"] == [a for a in cmd if a != "0"]
    assert cmd1[cmd1.index("--node_rank") + 1] == "1"


def test_rendezvous_id_is_the_slurm_run_id_when_set(tmp_path, monkeypatch):
    monkeypatch.setenv(distributed.RUN_ID_ENV, "slurm-4242")
    topo = distributed.topology(_config("launcher=fsdp2"), nnodes=4, node_rank=3,
                                master_addr="gpu-node001", master_port=29601, gpus_per_node=4)
    cmd = distributed.command(_run(tmp_path), topo)
    tail = cmd[cmd.index("--"):]
    assert tail == ["--", "--nnodes", "4", "--nproc_per_node", "4", "--node_rank", "3",
                    "--rdzv_backend", "c10d", "--rdzv_endpoint", "gpu-node001:29601",
                    "--rdzv_id", "slurm-4242"]
    assert distributed.shared_run_id("x", [], topo) == "slurm-4242"


def test_resume_passes_the_checkpoint_to_axolotl(tmp_path):
    topo = distributed.topology(_config("launcher=ddp"), gpus_per_node=2)
    cmd = distributed.command(_run(tmp_path), topo, resume_from="/r/output/checkpoint-40")
    assert cmd[4:8] == ["torchrun", "--resume-from-checkpoint", "/r/output/checkpoint-40", "--"]


def test_sharding_launcher_on_one_gpu_still_uses_torchrun():
    topo = distributed.topology(_config("launcher=deepspeed-zero3-offload"), gpus_per_node=1)
    assert topo.world_size == 1 and topo.distributed
    assert not distributed.topology(_config("launcher=single")).distributed


@pytest.mark.parametrize(("overrides", "kwargs", "fragment"), [
    ("launcher=single", {"gpus_per_node": 4}, 'OVERRIDES="launcher=ddp"'),
    ("launcher=ddp", {"nnodes": 2}, "needs --master-addr"),
    ("launcher=ddp", {"nnodes": 2, "node_rank": 2, "master_addr": "h"}, "expected 0..1"),
    ("launcher=ddp", {"master_port": 70000}, "TCP port"),
    ("launcher=ddp", {"nnodes": 2, "master_addr": "bad host;rm"}, "host name or IP"),
    ("launcher=ddp", {"gpus_per_node": 0}, "must be >= 1"),
])
def test_bad_topology_is_a_user_error(overrides, kwargs, fragment):
    with pytest.raises(UserError) as err:
        distributed.topology(_config(overrides), **kwargs)
    assert fragment in str(err.value)


def test_bad_run_id_env_is_rejected(monkeypatch):
    monkeypatch.setenv(distributed.RUN_ID_ENV, "../../etc")
    topo = distributed.topology(_config("launcher=ddp"), nnodes=2, master_addr="h")
    with pytest.raises(UserError, match="TUNEBOOK_RUN_ID"):
        distributed.shared_run_id("x", [], topo)


def test_deepspeed_preflight_names_the_install_command():
    import importlib.util

    cfg = _config("launcher=deepspeed-zero2")
    if importlib.util.find_spec("deepspeed") is None:
        with pytest.raises(UserError, match="make setup-gpu"):
            distributed.preflight(cfg)
    else:
        distributed.preflight(cfg)
    distributed.preflight(_config("launcher=fsdp2"))  # FSDP needs nothing extra


def _state(out: Path, step: int, max_steps: int, counter: int = 0) -> None:
    ckpt = out / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text(json.dumps({
        "global_step": step, "max_steps": max_steps, "log_history": [{"loss": 1.0, "step": step}],
        "stateful_callbacks": {"EarlyStoppingCallback": {
            "args": {"early_stopping_patience": 3},
            "attributes": {"early_stopping_patience_counter": counter}}}}))


def test_result_from_output_judges_by_trainer_state(tmp_path):
    out = tmp_path / "output"
    assert checkpoints.result_from_output(out) == {}
    _state(out, 10, 40)
    (out / "adapter_model.safetensors").write_bytes(b"x")  # Axolotl saves one on Ctrl-C too
    assert checkpoints.result_from_output(out)["outcome"] == "interrupted"
    _state(out, 20, 40, counter=3)  # early stopping fired
    result = checkpoints.result_from_output(out)
    assert result["outcome"] == "completed" and result["early_stopped"]
    _state(out, 40, 40)
    assert checkpoints.result_from_output(out)["global_step"] == 40


def test_other_nodes_wait_for_node_zero_to_render(tmp_path):
    import threading

    run_dir = tmp_path / "runs" / "x" / "slurm-1"
    timer = threading.Timer(0.3, lambda: (run_dir.mkdir(parents=True),
                                          (run_dir / "axolotl.yaml").write_text("{}")))
    timer.start()
    distributed.wait_for_run(run_dir, timeout_s=10, poll_s=0.05)
    assert (run_dir / "axolotl.yaml").is_file()
    with pytest.raises(UserError, match="a filesystem every node sees"):
        distributed.wait_for_run(tmp_path / "never", timeout_s=0.2, poll_s=0.05)


def test_multi_node_run_id_is_shared_and_single_node_is_not(monkeypatch):
    cfg = _config("launcher=ddp")
    two = distributed.topology(cfg, nnodes=2, node_rank=1, master_addr="h")
    assert distributed.shared_run_id("r", ["launcher=ddp"], two) == \
        distributed.shared_run_id("r", ["launcher=ddp"],
                                  distributed.topology(cfg, nnodes=2, node_rank=0,
                                                       master_addr="h"))
    assert distributed.shared_run_id("r", [], distributed.topology(cfg, gpus_per_node=8)) is None
