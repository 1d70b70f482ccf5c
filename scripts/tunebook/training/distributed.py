"""Multi-GPU and multi-node launch: the ``axolotl train --launcher torchrun`` command line.

``tunebook.training.launch.launch_command`` hands every topology other than one process on one
GPU to ``command()`` here. The command is Axolotl 0.19.0's own CLI (``axolotl train <yaml>
--launcher torchrun -- <torchrun args>``), so DeepSpeed and FSDP are set up by Axolotl from the
rendered ``axolotl.yaml`` (``deepspeed:`` / ``fsdp_config:``), never by us:

- one node:   ``-- --nnodes 1 --nproc_per_node G --standalone``
- many nodes: ``-- --nnodes N --nproc_per_node G --node_rank R --rdzv_backend c10d
  --rdzv_endpoint ADDR:PORT --rdzv_id ID``. The rendezvous id must be the same on every node:
  Axolotl invents a random one per node when it is missing, and then the nodes never meet.
  It is ``TUNEBOOK_RUN_ID`` (the Slurm script sets it from the job id) or a hash of what every
  node is given identically (recipe, overrides, endpoint, node count).

Every node runs the same ``tunebook train`` command with its own ``--node-rank``; the run
directory is shared (``runs/`` on a filesystem all nodes see), rendered by node 0 and opened by
the others. Multi-process training cannot run on a CPU-only machine ("Cannot access accelerator
device"), so tests check these commands through ``--dry-run``, not by launching them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import ipaddress
import json
import os
import re
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunebook import paths
from tunebook.errors import UserError

DEFAULT_PORT = 29500
RUN_ID_ENV = "TUNEBOOK_RUN_ID"
_HOST = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                   r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class Topology:
    kind: str  # the launcher kind: single, ddp, deepspeed, fsdp
    nnodes: int
    gpus_per_node: int
    node_rank: int
    master_addr: str | None
    master_port: int

    @property
    def world_size(self) -> int:
        return self.nnodes * self.gpus_per_node

    @property
    def distributed(self) -> bool:
        """More than one process, or a sharding launcher (which needs torchrun even on 1 GPU)."""
        return self.world_size > 1 or self.kind != "single"


def topology(config: dict[str, Any], *, nnodes: int | None = None, node_rank: int | None = None,
             master_addr: str | None = None, master_port: int | None = None,
             gpus_per_node: int | None = None) -> Topology:
    """The topology of this launch: CLI flags over the recipe's ``launcher:`` section, checked."""
    launcher = config.get("launcher") or {}
    kind = str(launcher.get("kind", "single"))
    topo = Topology(
        kind=kind,
        nnodes=int(nnodes if nnodes is not None else launcher.get("nnodes", 1)),
        gpus_per_node=int(gpus_per_node if gpus_per_node is not None
                          else launcher.get("gpus_per_node", 1)),
        node_rank=int(node_rank or 0),
        master_addr=master_addr,
        master_port=int(master_port or DEFAULT_PORT),
    )
    name = launcher.get("name", kind)
    if topo.nnodes < 1 or topo.gpus_per_node < 1:
        raise UserError(f"--nnodes {topo.nnodes} --gpus-per-node {topo.gpus_per_node}: both "
                        "must be >= 1")
    if not 0 <= topo.node_rank < topo.nnodes:
        raise UserError(f"--node-rank {topo.node_rank}: expected 0..{topo.nnodes - 1} for "
                        f"--nnodes {topo.nnodes}")
    if not 1 <= topo.master_port <= 65535:
        raise UserError(f"--master-port {topo.master_port}: expected a TCP port 1-65535")
    if topo.nnodes > 1 and not topo.master_addr:
        raise UserError(f"--nnodes {topo.nnodes} needs --master-addr (MASTER_ADDR=): the host "
                        "of node 0, reachable from every node")
    if topo.master_addr and not _valid_host(topo.master_addr):
        raise UserError(f"--master-addr {topo.master_addr!r}: expected a host name or IP "
                        "address such as node001 or 10.0.0.4")
    if kind == "single" and topo.world_size > 1:
        raise UserError(f"launcher {name} runs one process, got {topo.nnodes} node(s) x "
                        f"{topo.gpus_per_node} GPU(s); add OVERRIDES=\"launcher=ddp\" (or "
                        "launcher=deepspeed-zero3, launcher=fsdp2)")
    return topo


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(_HOST.match(host))


def topology_overrides(topo: Topology) -> list[str]:
    """Record the launch topology in the resolved recipe (``launcher.nnodes`` ...)."""
    return [f"launcher.nnodes={topo.nnodes}", f"launcher.gpus_per_node={topo.gpus_per_node}"]


def rdzv_id(recipe: str, overrides: list[str], topo: Topology) -> str:
    """The same string on every node of one job (see the module docstring)."""
    env = os.environ.get(RUN_ID_ENV)
    if env:
        return env
    key = json.dumps([recipe, overrides, topo.master_addr, topo.master_port, topo.nnodes])
    return "tb-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def shared_run_id(recipe: str, overrides: list[str], topo: Topology) -> str | None:
    """The run id all nodes agree on; ``None`` on one node (a fresh id is fine there)."""
    env = os.environ.get(RUN_ID_ENV)
    if env:
        if not _RUN_ID.match(env):
            raise UserError(f"{RUN_ID_ENV}={env!r}: expected letters, digits, '.', '_' or '-'")
        return env
    return rdzv_id(recipe, overrides, topo) if topo.nnodes > 1 else None


def axolotl_bin() -> str:
    found = Path(sys.executable).parent / "axolotl"
    return str(found) if found.exists() else "axolotl"


def command(run: Any, topo: Topology, *, recipe: str | None = None,
            overrides: list[str] | None = None, resume_from: str | None = None) -> list[str]:
    """``axolotl train <run>/axolotl.yaml --launcher torchrun -- <torchrun args>``."""
    cmd = [axolotl_bin(), "train", str(run.axolotl_yaml), "--launcher", "torchrun"]
    if resume_from:
        cmd += ["--resume-from-checkpoint", str(resume_from)]
    cmd += ["--", "--nnodes", str(topo.nnodes), "--nproc_per_node", str(topo.gpus_per_node)]
    if topo.nnodes == 1:
        cmd += ["--standalone"]  # a local rendezvous on a free port; nothing to agree on
    else:
        if overrides is None:  # the run's own overrides: what every node was given
            manifest = run.path / "manifest.json"
            overrides = json.loads(manifest.read_text())["overrides"] if manifest.is_file() else []
        rid = rdzv_id(recipe or run.recipe, overrides, topo)
        cmd += ["--node_rank", str(topo.node_rank), "--rdzv_backend", "c10d",
                "--rdzv_endpoint", f"{topo.master_addr}:{topo.master_port}", "--rdzv_id", rid]
    return cmd


def preflight(config: dict[str, Any]) -> None:
    """Before a real launch: the packages the launcher needs are installed."""
    kind = (config.get("launcher") or {}).get("kind")
    if kind == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
        raise UserError("launcher deepspeed-*: the deepspeed package is not installed; on the "
                        "GPU machine run `make setup-gpu` (or pick launcher=fsdp2, which needs "
                        "nothing extra)")


def wait_for_run(path: Path, timeout_s: float = 600, poll_s: float = 2) -> None:
    """Node ranks > 0: wait until node 0 has rendered the shared run directory."""
    deadline = time.monotonic() + timeout_s
    while not (path / "axolotl.yaml").is_file():
        if time.monotonic() > deadline:
            raise UserError(f"{paths.rel(path)}/axolotl.yaml did not appear within "
                            f"{timeout_s:.0f} s: node 0 renders the run; multi-node training "
                            "needs runs/ on a filesystem every node sees, and the same "
                            f"{RUN_ID_ENV} on every node")
        time.sleep(poll_s)


def describe(cmd: list[str]) -> str:
    return shlex.join(cmd)
