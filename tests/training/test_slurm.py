"""``tunebook sbatch``: the rendered Slurm script passes shellcheck and carries the topology."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tunebook import cli, paths
from tunebook.errors import UserError
from tunebook.training import slurm

SHELLCHECK = Path(sys.executable).parent / "shellcheck"


@pytest.fixture(autouse=True)
def _runs(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "RUNS", tmp_path / "runs")


def _shellcheck(script: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(SHELLCHECK), "--severity=style", str(script)],
                          capture_output=True, text=True)


@pytest.mark.parametrize(("recipe", "overrides", "nodes", "gpus", "partition"), [
    ("mistral7b-qlora-support", "launcher=deepspeed-zero3", 2, 8, "gpu"),
    ("llama8b-lora-support", "launcher=fsdp2 axolotl.num_epochs=1", 4, 4, None),
    ("qwen1.5b-full-triage", "launcher=ddp", 1, 2, "a100,h100"),
    ("llama8b-dpo-support", "launcher=deepspeed-zero3-offload", 3, 8, None),
])
def test_sbatch_script_passes_shellcheck(recipe, overrides, nodes, gpus, partition):
    script = slurm.render_sbatch(recipe, overrides, nodes=nodes, gpus_per_node=gpus,
                                 partition=partition, time_limit="04:00:00")
    text = script.read_text()
    check = _shellcheck(script)
    assert check.returncode == 0, check.stdout + check.stderr
    assert text.startswith("#!/bin/bash\n")
    assert f"#SBATCH --nodes={nodes}\n" in text
    assert "#SBATCH --ntasks-per-node=1\n" in text
    assert f"#SBATCH --gpus-per-node={gpus}\n" in text
    assert "#SBATCH --requeue\n" in text
    assert "#SBATCH --time=04:00:00\n" in text
    assert ("#SBATCH --partition=" in text) == bool(partition)
    # rendezvous on the first node, this node's rank from Slurm, resume on requeue
    assert 'scontrol show hostnames "$SLURM_JOB_NODELIST")' in text
    assert 'MASTER_ADDR="${HOSTS[0]}"' in text
    assert '--node-rank "$SLURM_NODEID"' in text
    assert 'RESUME=(--resume last)' in text and "SLURM_RESTART_COUNT" in text
    assert 'TUNEBOOK_RUN_ID="slurm-${SLURM_JOB_ID}"' in text
    # the srun line runs tunebook train with the same topology
    assert re.search(rf"--nnodes {nodes} \\\n\s+--gpus-per-node {gpus} ", text)
    log_dir = paths.RUNS / recipe / "slurm-logs"
    assert log_dir.is_dir() and f"#SBATCH --output={log_dir}/%x-%j.out" in text
    assert script.stat().st_mode & 0o100  # executable


def test_sbatch_quotes_overrides_for_the_shell():
    script = slurm.render_sbatch("llama8b-lora-support",
                                 "launcher=ddp +axolotl.wandb_project='team space'",
                                 nodes=1, gpus_per_node=2)
    assert _shellcheck(script).returncode == 0
    line = next(x for x in script.read_text().splitlines() if "--overrides" in x)
    # the shell hands tunebook one argument that splits back into the same two overrides
    import shlex

    (arg,) = shlex.split(line.split("--overrides", 1)[1].rstrip(" \\"))
    assert shlex.split(arg) == ["launcher=ddp", "+axolotl.wandb_project=team space"]


def test_sbatch_rejects_single_launcher_on_many_gpus():
    with pytest.raises(UserError, match="launcher=ddp"):
        slurm.render_sbatch("llama8b-lora-support", "", nodes=2, gpus_per_node=8)


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"time_limit": "tomorrow"}, "--time 'tomorrow'"),
    ({"partition": "gpu; rm -rf /"}, "--partition"),
    ({"nodes": 0}, "must be >= 1"),
])
def test_sbatch_rejects_bad_options(kwargs, fragment):
    args = {"nodes": 1, "gpus_per_node": 2, **kwargs}
    with pytest.raises(UserError) as err:
        slurm.render_sbatch("llama8b-lora-support", "launcher=ddp", **args)
    assert fragment in str(err.value)


def test_sbatch_cli_prints_submit_line(capsys, tmp_path):
    out = tmp_path / "job.sh"
    code = cli.main(["sbatch", "--recipe", "llama8b-lora-support", "--overrides",
                     "launcher=fsdp2", "--nodes", "2", "--gpus-per-node", "4",
                     "--time", "1-00:00:00", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "2 node(s) x 4 GPU(s)" in printed and "submit: sbatch" in printed
    assert _shellcheck(out).returncode == 0


def test_sbatch_cli_defaults_gpus_to_the_launcher(capsys, tmp_path):
    out = tmp_path / "job.sh"
    assert cli.main(["sbatch", "--recipe", "llama8b-lora-support", "--overrides",
                     "launcher=deepspeed-zero2", "--nodes", "2", "--out", str(out)]) == 0
    assert "#SBATCH --gpus-per-node=8\n" in out.read_text()


def _fake_cluster(bin_dir: Path, tunebook: str) -> None:
    """Stand-ins for the two Slurm commands the script calls: a 2-node allocation where srun
    runs the task once per node (SLURM_NODEID 0 and 1) with tunebook replaced by echo."""
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text('#!/bin/bash\n[ "$1 $2" = "show hostnames" ] && '
                                      'printf "gpu-a17\\ngpu-a18\\n"\n')
    (bin_dir / "srun").write_text(f"""#!/bin/bash
args=()
for a in "$@"; do
  if [ ${{#args[@]}} -eq 0 ] && [[ "$a" == --* ]]; then continue; fi
  [ "$a" = "{tunebook}" ] && a=echo
  args+=("$a")
done
for node in 0 1; do SLURM_NODEID=$node "${{args[@]}}"; done
""")
    for f in bin_dir.iterdir():
        f.chmod(0o755)


@pytest.mark.parametrize("restarts", [0, 1])
def test_sbatch_script_runs_one_task_per_node_and_resumes_when_requeued(tmp_path, restarts):
    import os

    script = slurm.render_sbatch("llama8b-lora-support", "launcher=deepspeed-zero3",
                                 nodes=2, gpus_per_node=8)
    tunebook = str(Path(sys.executable).parent / "tunebook")
    _fake_cluster(tmp_path / "bin", tunebook)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
           "SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "gpu-a[17-18]",
           "SLURM_RESTART_COUNT": str(restarts)}
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    tasks = [line for line in proc.stdout.splitlines() if line.startswith("train ")]
    resume = " --resume last" if restarts else ""
    expected = ("train --recipe llama8b-lora-support --overrides launcher=deepspeed-zero3 "
                "--nnodes 2 --gpus-per-node 8 --master-addr gpu-a17 --master-port 29500"
                f"{resume} --node-rank")
    assert tasks == [f"{expected} 0", f"{expected} 1"]
    assert "rendezvous gpu-a17:29500" in proc.stdout
    assert f"{paths.RUNS.resolve()}/llama8b-lora-support/slurm-4242" in proc.stdout
    assert ("resuming" in proc.stdout) == bool(restarts)


def test_sbatch_for_a_cpu_recipe_requests_no_gpu():
    script = slurm.render_sbatch("tiny-lora-triage", "axolotl.num_epochs=1", nodes=1,
                                 gpus_per_node=1)
    text = script.read_text()
    assert _shellcheck(script).returncode == 0
    assert "--gpus-per-node=" not in text  # no GPU gres: the job fits a node without GPUs
    assert f"#SBATCH --cpus-per-task={slurm.CPU_JOB_CPUS}\n" in text
    assert "# Topology: CPU only" in text
    assert f"export TUNEBOOK_ROOT={paths.ROOT}\n" in text  # trains in the tree it came from


def test_sbatch_refuses_a_cpu_recipe_on_several_processes():
    with pytest.raises(UserError, match=r"planned for CPU only \(meta.gpu: cpu\)"):
        slurm.render_sbatch("tiny-lora-triage", "launcher=ddp", nodes=1, gpus_per_node=2)


def test_sbatch_cli_says_cpu_only(capsys, tmp_path):
    out = tmp_path / "job.sh"
    assert cli.main(["sbatch", "--out", str(out)]) == 0
    assert "1 node(s) x 1 process, CPU only" in capsys.readouterr().out


def test_a_requeued_job_may_repeat_its_overrides_and_topology(capsys):
    """The script passes the run's overrides and topology again when Slurm requeues it; the
    resumed run accepts exactly those (the manifest records the topology as ``++launcher...``)
    and still refuses a changed override."""
    from tunebook.rundir import RunDir
    from tunebook.training import run as lifecycle

    short = "+axolotl.max_steps=4 axolotl.eval_steps=2 axolotl.save_steps=2"
    topology = {"nnodes": 1, "gpus_per_node": 1}
    assert cli.main(["train", "--dry-run", "--overrides", short, "--nnodes", "1",
                     "--gpus-per-node", "1"]) == 0
    config = next(line.split(":", 1)[1].strip() for line in capsys.readouterr().out.splitlines()
                  if line.startswith("config:"))
    run = RunDir.open(Path(config).parent)
    assert "++launcher.nnodes=1" in run.manifest()["overrides"]
    lifecycle._check_same_overrides(run, short, topology)  # what the requeued job passes
    with pytest.raises(UserError, match="RESUME with OVERRIDES"):
        lifecycle._check_same_overrides(run, short + " axolotl.num_epochs=2", topology)
