"""``tunebook sbatch``: a Slurm batch script that trains a recipe on N nodes x G GPUs.

The script is rendered from a template file (``recipes/launcher/slurm/sbatch.sh.j2``, Jinja2) so
a cluster's site-specific lines (modules, containers, accounts) are a template edit, not code.
The recipe is validated with the requested topology first: a script is written only for a
recipe that would launch. The script itself runs ``tunebook train`` on every node (srun, one
task per node), which builds the torchrun command (``tunebook.training.launch``).
"""

from __future__ import annotations

import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from tunebook import paths
from tunebook.compose import compose_recipe
from tunebook.errors import UserError

TEMPLATE = "launcher/slurm/sbatch.sh.j2"  # under recipes/
DEFAULT_PORT = 29500
CPU = "cpu"  # meta.gpu of a recipe planned for CPU only: its job requests no GPU
CPU_JOB_CPUS = 2  # cores a CPU-only job asks for: such recipes are sized for a laptop or CI runner
_TIME = re.compile(r"^(\d+-)?\d{1,3}(:\d{2}){0,2}$|^\d+-\d{1,2}$")  # Slurm's --time forms


def template_path() -> Path:
    return paths.RECIPES / TEMPLATE


def topology_overrides(nodes: int, gpus_per_node: int) -> list[str]:
    """Overrides that record the topology in the resolved recipe (the planner and rules read it)."""
    return [f"launcher.nnodes={nodes}", f"launcher.gpus_per_node={gpus_per_node}"]


def render_sbatch(recipe: str, overrides: str, *, nodes: int, gpus_per_node: int,
                  partition: str | None = None, time_limit: str = "24:00:00",
                  cpus_per_task: int | None = None, master_port: int = DEFAULT_PORT,
                  out: Path | None = None) -> Path:
    """Validate ``recipe`` for the topology, write the batch script, return its path."""
    import jinja2

    from tunebook.compose import parse_overrides
    from tunebook.validate import validate_recipe

    if nodes < 1 or gpus_per_node < 1:
        raise UserError(f"--nodes {nodes} --gpus-per-node {gpus_per_node}: both must be >= 1")
    if not _TIME.match(time_limit):
        raise UserError(f"--time {time_limit!r}: expected a Slurm time such as 04:00:00, "
                        "90 (minutes) or 2-00:00:00 (days-hours)")
    if partition is not None and not re.match(r"^[A-Za-z0-9_.,-]+$", partition):
        raise UserError(f"--partition {partition!r}: expected a partition name such as 'gpu'")
    items = parse_overrides(overrides)
    validated = validate_recipe(recipe, [*items, *topology_overrides(nodes, gpus_per_node)])
    launcher = validated.recipe.launcher
    gpu = validated.recipe.meta.gpu != CPU
    if not gpu and nodes * gpus_per_node > 1:
        raise UserError(f"recipe {recipe} is planned for CPU only (meta.gpu: {CPU}): one node, "
                        f"one process; got --nodes {nodes} --gpus-per-node {gpus_per_node}")
    runs_dir = paths.RUNS.resolve() / recipe
    log_dir = runs_dir / "slurm-logs"
    log_dir.mkdir(parents=True, exist_ok=True)  # Slurm does not create the --output directory
    script = out or runs_dir / f"sbatch-{time.strftime('%Y%m%d-%H%M%S')}.sh"
    tunebook_bin = Path(sys.executable).parent / "tunebook"
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(paths.RECIPES)),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             autoescape=False)  # a shell script; values are quoted by |q
    env.filters["q"] = lambda value: shlex.quote(str(value))
    try:
        text = env.get_template(TEMPLATE).render(
            recipe=recipe, overrides=shlex.join(items), nodes=nodes, gpus_per_node=gpus_per_node,
            gpu=gpu, time=time_limit,
            cpus_per_task=cpus_per_task or (max(4, 8 * gpus_per_node) if gpu else CPU_JOB_CPUS),
            partition=partition, launcher=launcher.name, job_name=f"tb-{recipe}"[:64],
            log_dir=log_dir, runs_dir=runs_dir, root=paths.ROOT, tunebook=tunebook_bin,
            master_port=master_port, script=script, created=time.strftime("%Y-%m-%d %H:%M"),
        )
    except jinja2.TemplateError as e:
        raise UserError(f"{paths.rel(template_path())}: {e}; fix the template") from None
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(text, encoding="utf-8")
    script.chmod(0o755)
    return script


def launcher_gpus(recipe: str, overrides: str) -> int:
    launcher: dict[str, Any] = compose_recipe(recipe, overrides).config.get("launcher") or {}
    return int(launcher.get("gpus_per_node") or 1)


def needs_gpu(recipe: str, overrides: str) -> bool:
    """False for a recipe planned for CPU only (``meta.gpu: cpu``): its job asks for no GPU."""
    return (compose_recipe(recipe, overrides).config.get("meta") or {}).get("gpu") != CPU
