"""Before any GPU time: the checks ``make preflight`` runs and ``make train`` runs before it
launches. Each check is one line, ok or fail with the fix; any fail is exit 1, in seconds.

- **accelerator**: a CUDA GPU is present when the recipe needs one (bitsandbytes 4/8-bit, bf16 or
  fp16, flash attention, a GPU in ``meta.gpu``, several GPUs in ``launcher``); its name and
  memory; the plan (``tunebook.plan.estimate``) re-run for that GPU and GPU count, judged
  against the memory the GPU reports, with the planner's suggestions when it does not fit.
- **base model**: built here (twins, the tiny base), or a local path that exists, or in the
  Hugging Face cache, or the Hub answers within ``HUB_TIMEOUT_S`` (never when the user set
  ``HF_HUB_OFFLINE``); a gated model needs a token with access (only its presence is checked:
  the token is never printed or stored).
- **disk**: free space under ``runs/`` for ``save_total_limit`` checkpoints of the estimated
  size, the final weights and the merged model, plus the download into the Hugging Face cache.

The outside world is reached only through ``Probes`` (torch.cuda, huggingface_hub,
shutil.disk_usage), so tests replace each probe with a fake answer. The two slow probes run in
a subprocess with a hard timeout: torch.cuda leaves no CUDA context in the training parent, and
a hung DNS lookup cannot outlast the timeout. The checks are data (``CHECKS``) and run
concurrently.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunebook import env, gpus, paths, twins
from tunebook.compose import DEFAULT_RECIPE
from tunebook.plan import estimate as planner
from tunebook.plan.memory import optimizer_state_bytes
from tunebook.plan.settings import settings_from
from tunebook.training import distributed

GIB = 2**30
GPU_TIMEOUT_S = 60.0  # importing torch on a busy machine takes seconds; a hung driver does not end
HUB_TIMEOUT_S = 10.0  # the Hub must answer within this; the probe process is killed after it
UNLIMITED_CHECKPOINTS = 10  # counted when axolotl.save_total_limit is unset (every one is kept)
# Device nodes a CUDA (or ROCm, or WSL) driver creates; with none of them torch.cuda sees nothing,
# so the probe answers at once instead of importing torch.
GPU_DEVICE_NODES = ("/dev/nvidiactl", "/dev/kfd", "/dev/dxg")


# ----------------------------------------------------------------------------- probes
@dataclass(frozen=True)
class Device:
    name: str
    total_gib: float
    free_gib: float


@dataclass(frozen=True)
class HubAnswer:
    reachable: bool
    exists: bool = True
    gated: bool = False
    access: bool | None = None  # gated only: whether the available token may read it
    error: str = ""


def _run_probe(code: str, args: list[str], timeout: float,
               probe_env: dict[str, str] | None = None) -> Any:
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=timeout, env=probe_env)
    if proc.returncode != 0:
        raise RuntimeError((proc.stderr.strip().splitlines() or ["no output"])[-1])
    return json.loads(proc.stdout.strip().splitlines()[-1])


_CUDA_PROBE = """
import json, torch
out = []
if torch.cuda.is_available():
    for i in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(i)
        out.append({"name": torch.cuda.get_device_name(i), "total_gib": total / 2**30,
                    "free_gib": free / 2**30})
print(json.dumps(out))
"""


def cuda_devices() -> list[Device]:
    """The CUDA GPUs torch sees (``CUDA_VISIBLE_DEVICES`` respected), queried in a subprocess."""
    if not any(os.path.exists(node) for node in GPU_DEVICE_NODES):
        return []
    try:
        rows = _run_probe(_CUDA_PROBE, [], GPU_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"torch.cuda did not answer within {GPU_TIMEOUT_S:.0f} s") from None
    return [Device(**row) for row in rows]


_HUB_PROBE = """
import json, sys
from huggingface_hub import auth_check, get_token, model_info
from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError
repo, timeout = sys.argv[1], float(sys.argv[2])
out = {"reachable": True}
try:
    info = model_info(repo, timeout=timeout)
    out["gated"] = bool(info.gated)
    if info.gated and get_token():
        try:
            auth_check(repo)
            out["access"] = True
        except GatedRepoError:
            out["access"] = False
except GatedRepoError:
    out.update(gated=True, access=False)
except RepositoryNotFoundError:
    out["exists"] = False
except Exception as e:
    out.update(reachable=False, error=f"{type(e).__name__}: {str(e).splitlines()[0][:160]}")
print(json.dumps(out))
"""


def hub_answer(repo_id: str) -> HubAnswer:
    """What the Hub says about ``repo_id``, asked from a subprocess killed after the timeout."""
    try:
        row = _run_probe(_HUB_PROBE, [repo_id, str(HUB_TIMEOUT_S)], HUB_TIMEOUT_S + 5,
                         env.child_env(repo_id))
    except subprocess.TimeoutExpired:
        return HubAnswer(reachable=False, error=f"no answer within {HUB_TIMEOUT_S:.0f} s")
    except (RuntimeError, ValueError) as e:
        return HubAnswer(reachable=False, error=str(e))
    return HubAnswer(**row)


def hf_cached(repo_id: str) -> bool:
    """Whether the local Hugging Face cache holds the model's config and weights (index)."""
    from huggingface_hub import try_to_load_from_cache

    def has(name: str) -> bool:
        try:
            return isinstance(try_to_load_from_cache(repo_id, name), str)
        except Exception:  # an id the cache cannot parse
            return False

    return has("config.json") and (has("model.safetensors.index.json")
                                   or has("model.safetensors"))


def hf_token() -> bool:
    from huggingface_hub import get_token

    return bool(get_token())


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def hf_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


@dataclass
class Probes:
    """Every question preflight asks the outside world; tests pass fakes."""

    devices: Callable[[], list[Device]] = cuda_devices
    cached: Callable[[str], bool] = hf_cached
    hub: Callable[[str], HubAnswer] = hub_answer
    token: Callable[[], bool] = hf_token
    offline: Callable[[], bool] = env.user_hub_offline
    cache_dir: Callable[[], Path] = hf_cache_dir
    disk_free: Callable[[Path], int] = free_bytes


# ----------------------------------------------------------------------------- checks
@dataclass(frozen=True)
class Target:
    """What is checked: a validated recipe and the GPUs its launch uses."""

    recipe: str
    config: dict[str, Any]
    gpus_per_node: int = 1
    nnodes: int = 1

    @classmethod
    def of(cls, recipe: str, config: dict[str, Any], topo: distributed.Topology) -> Target:
        return cls(recipe, config, gpus_per_node=topo.gpus_per_node, nnodes=topo.nnodes)

    @property
    def base(self) -> str:
        return str(self.config["axolotl"]["base_model"])

    @property
    def built_here(self) -> bool:
        return twins.built_here(self.base)

    @property
    def planned_gpu(self) -> str:
        return str((self.config.get("meta") or {}).get("gpu") or "cpu")


@dataclass(frozen=True)
class Line:
    check: str
    ok: bool
    text: str

    def render(self) -> str:
        return f"  {'ok  ' if self.ok else 'fail'}  {self.check:<12} {self.text}"


def gpu_reasons(target: Target) -> list[str]:
    """Why the recipe needs a CUDA GPU (empty: it trains on a CPU)."""
    if target.built_here:
        return []  # twins and the tiny base train on a CPU, 4-bit included
    ax = target.config.get("axolotl") or {}
    reasons = []
    if ax.get("load_in_4bit"):
        reasons.append("bitsandbytes 4-bit (axolotl.load_in_4bit)")
    if ax.get("load_in_8bit"):
        reasons.append("bitsandbytes 8-bit (axolotl.load_in_8bit)")
    for key in ("bf16", "fp16"):
        if ax.get(key) is True:
            reasons.append(f"{key} (axolotl.{key}: true)")
    if ax.get("attn_implementation") == "flash_attention_2" or ax.get("flash_attention"):
        reasons.append("flash attention (axolotl.attn_implementation)")
    if target.planned_gpu != "cpu":
        reasons.append(f"a GPU in meta.gpu ({target.planned_gpu})")
    if target.gpus_per_node * target.nnodes > 1:
        reasons.append(f"{target.gpus_per_node * target.nnodes} GPUs in launcher")
    return reasons


def match_gpu(device: Device) -> gpus.GPU | None:
    """The row of ``recipes/hardware/gpus.yaml`` for a GPU's reported name: the model in the id
    (``a100`` of a100-80g, ``rtx4090``) is a word of the name, or two adjacent words
    (``NVIDIA A100-SXM4-80GB``, ``NVIDIA GeForce RTX 4090``; L4 is not L40S); among several
    rows, the memory closest to what the GPU reports."""
    words = [w for w in re.split(r"[^a-z0-9]+", device.name.lower()) if w]
    names = set(words) | {a + b for a, b in zip(words, words[1:], strict=False)}
    rows = [g for g in gpus.table().values() if g.id.rsplit("-", 1)[0] in names]
    return min(rows, key=lambda g: abs(g.memory_gb - device.total_gib), default=None)


def _smoke_hint(target: Target) -> str:
    return (f"here, `make smoke RECIPE={target.recipe}` trains its tiny CPU twin and `make train` "
            f"the embedded default ({DEFAULT_RECIPE})")


def check_accelerator(target: Target, probes: Probes) -> Line:
    reasons = gpu_reasons(target)
    if not reasons:
        why = "its base is built here" if target.built_here else f"meta.gpu is {target.planned_gpu}"
        return Line("accelerator", True, f"no GPU needed ({why}: it trains on a CPU)")
    try:
        devices = probes.devices()
    except RuntimeError as e:
        return Line("accelerator", False, f"cannot query CUDA ({e}); the recipe needs a GPU for "
                    f"{', '.join(reasons)}; check the driver with nvidia-smi")
    if not devices:
        return Line("accelerator", False, f"no CUDA GPU here; the recipe needs "
                    f"one for {', '.join(reasons)}. Fix: run it on a GPU machine; "
                    + _smoke_hint(target))
    want = target.gpus_per_node
    if len(devices) < want:
        return Line("accelerator", False, f"{len(devices)} CUDA GPU(s) here, the launcher uses "
                    f"{want} per node. Fix: run where {want} are visible (CUDA_VISIBLE_DEVICES), "
                    f"or OVERRIDES=\"launcher.gpus_per_node={len(devices)}\"")
    used = devices[:want]
    first = used[0]
    capacity = min(d.total_gib for d in used)
    row = match_gpu(first)
    seen = f"{want} x {first.name} ({capacity:.1f} GiB)"
    if row is None:  # plan with the recipe's GPU (or the nearest in memory), judge by this one
        row = gpus.get(target.planned_gpu) if target.planned_gpu != "cpu" else min(
            (g for g in gpus.table().values() if g.id != "cpu"),
            key=lambda g: abs(g.memory_gb - capacity))
        seen += f", not in {paths.rel(gpus.TABLE)}: planned as {row.id}"
    plan = planner.estimate(target.config, row.id, want * target.nnodes)
    usable = capacity * (1 - planner.MARGIN)  # the memory this GPU reports, not the table's
    if plan.peak_gb > usable:
        fitting = [s for s in plan.suggestions if s.fits][:3]
        fix = ("; ".join(f"{s.change}: {s.overrides} (peak {s.peak_gb:.1f} GiB)" for s in fitting)
               if fitting else f"a GPU with at least {plan.peak_gb / (1 - planner.MARGIN):.0f} "
                               "GiB, or see `make plan`")
        return Line("accelerator", False, f"{seen}: the plan's peak {plan.peak_gb:.1f} GiB does "
                    f"not fit {usable:.1f} GiB usable. Fix: {fix}")
    busy = [d for d in used if d.free_gib < plan.peak_gb]
    if busy:
        d = busy[0]
        return Line("accelerator", False, f"{seen}: {d.free_gib:.1f} GiB free of {d.total_gib:.1f}"
                    f", the plan's peak is {plan.peak_gb:.1f} GiB; other processes hold the rest. "
                    "Fix: stop them (nvidia-smi lists them) or pick another GPU")
    return Line("accelerator", True, f"{seen}: the plan's peak {plan.peak_gb:.1f} GiB fits "
                f"{usable:.1f} GiB usable")


def _is_local(base: str) -> bool:
    return (os.path.isabs(base) or base.startswith((".", "~"))
            or (paths.ROOT / base).exists() or base.count("/") != 1)


def check_base_model(target: Target, probes: Probes) -> Line:
    base = target.base
    if target.built_here:
        return Line("base model", True, f"{paths.rel(base)}: built here by tunebook, nothing to "
                    "download")
    if _is_local(base):
        path = Path(base).expanduser()
        path = path if path.is_absolute() else paths.ROOT / path
        if (path / "config.json").is_file():
            return Line("base model", True, f"{base}: a local model directory")
        return Line("base model", False, f"{base}: no model directory there (config.json). Fix: "
                    "set axolotl.base_model to a directory saved with save_pretrained, or a Hub id")
    if probes.cached(base):
        return Line("base model", True, f"{base}: in the Hugging Face cache "
                    f"({probes.cache_dir()})")
    if probes.offline():
        return Line("base model", False, f"{base}: not in the Hugging Face cache "
                    f"({probes.cache_dir()}) and HF_HUB_OFFLINE forbids downloading it. Fix: "
                    f"`hf download {base}` where the Hub is reachable (same HF_HOME), or unset "
                    "HF_HUB_OFFLINE")
    answer = probes.hub(base)
    if not answer.reachable:
        return Line("base model", False, f"{base}: not in the Hugging Face cache and the Hub did "
                    f"not answer ({answer.error}). Fix: check the network or HF_ENDPOINT, or "
                    f"download it elsewhere (`hf download {base}`) into this HF cache")
    if not answer.exists:
        return Line("base model", False, f"{base}: no such model on the Hub (or a private one "
                    "this token cannot see). Fix: check axolotl.base_model, or `hf auth login`")
    if answer.gated and not probes.token():
        return Line("base model", False, f"{base}: gated, and no Hugging Face token is set. Fix: "
                    f"accept its licence on https://huggingface.co/{base}, then `hf auth login` "
                    "(or set HF_TOKEN)")
    if answer.gated and answer.access is False:
        return Line("base model", False, f"{base}: gated, and the token has no access yet. Fix: "
                    f"accept its licence on https://huggingface.co/{base} with that account")
    gated = " (gated; the token has access)" if answer.gated else ""
    return Line("base model", True, f"{base}: on the Hub{gated}, downloaded by the first "
                "training step")


def disk_needs(target: Target, downloading: bool) -> list[tuple[str, str, float]]:
    """(``runs`` or ``cache``, what, bytes) that training and merging this recipe write."""
    ax = target.config.get("axolotl") or {}
    plan = planner.estimate(target.config, target.planned_gpu, suggest=False)
    s = settings_from(target.config, gpus.get(target.planned_gpu))
    params = plan.params_b * 1e9
    trainable = plan.trainable_params
    dtype = s.dtype_bytes  # the merged model is saved in the training dtype
    adapter = s.adapter
    weight_bytes = s.adapter_bytes if adapter else dtype  # PEFT keeps adapters in fp32
    state, _note = optimizer_state_bytes(s.optimizer, weight_bytes)
    state = 0 if ax.get("save_only_model") else state
    checkpoint = trainable * (weight_bytes + state)
    limit = ax.get("save_total_limit")
    kept = int(limit) if limit else UNLIMITED_CHECKPOINTS
    final = trainable * weight_bytes
    needs = [("runs", f"{kept} checkpoint(s) x {_size(checkpoint)}", kept * checkpoint),
             ("runs", f"final {'adapter' if adapter else 'model'} {_size(final)}", final)]
    if adapter:
        needs.append(("runs", f"merged model {_size(params * dtype)}", params * dtype))
    if downloading:  # Hub checkpoints are bf16 safetensors: 2 bytes per parameter
        needs.append(("cache", f"base model download {_size(params * 2)}", params * 2))
    return needs


def _size(nbytes: float) -> str:
    if nbytes >= GIB:
        return f"{nbytes / GIB:.1f} GiB"
    return f"{nbytes / 2**20:.0f} MiB" if nbytes >= 2**20 else "<1 MiB"


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(target: Target, probes: Probes) -> Line:
    downloading = not target.built_here and not _is_local(target.base) \
        and not probes.cached(target.base)
    places = {"runs": paths.RUNS, "cache": probes.cache_dir()}
    by_fs: dict[int, tuple[Path, list[str], float]] = {}  # one total per file system
    for where, what, nbytes in disk_needs(target, downloading):
        dev = _existing(places[where]).stat().st_dev
        place, items, total = by_fs.get(dev, (places[where], [], 0.0))
        by_fs[dev] = (place, [*items, what], total + nbytes)
    parts, short = [], []
    for place, items, total in by_fs.values():
        free = probes.disk_free(_existing(place))
        text = (f"{_size(free)} free under {paths.rel(place)}/, needs {_size(total)} "
                f"({' + '.join(items)})")
        (parts if free >= total else short).append(text)
    if short:
        return Line("disk", False, "; ".join(short) + ". Fix: free space there, or keep fewer "
                    "checkpoints (OVERRIDES=\"axolotl.save_total_limit=1\")")
    return Line("disk", True, "; ".join(parts))


CHECKS: tuple[Callable[[Target, Probes], Line], ...] = (check_accelerator, check_base_model,
                                                        check_disk)


def run_checks(target: Target, probes: Probes | None = None,
               checks: tuple[Callable[[Target, Probes], Line], ...] = CHECKS) -> list[Line]:
    """Every check, concurrently (the slow ones wait on subprocesses), in ``checks`` order."""
    probes = probes or Probes()
    with ThreadPoolExecutor(max_workers=len(checks)) as pool:
        return list(pool.map(lambda check: check(target, probes), checks))


def run(target: Target, probes: Probes | None = None,
        log: Callable[[str], None] = print) -> list[Line]:
    """Run the checks and print one line each; the caller decides what a fail means."""
    log(f"preflight of {target.recipe}:")
    lines = run_checks(target, probes)
    for line in lines:
        log(line.render())
    return lines


def failure(target: Target, lines: list[Line]) -> str | None:
    """The one-line verdict when any check failed, else ``None``."""
    failed = [line.check for line in lines if not line.ok]
    if not failed:
        return None
    return (f"preflight of {target.recipe}: {len(failed)} of {len(lines)} checks failed "
            f"({', '.join(failed)}); fix them (above) before spending GPU time")


def record(lines: list[Line]) -> dict[str, Any]:
    """The preflight as the manifest keeps it."""
    return {"passed": all(line.ok for line in lines),
            "checks": [{"check": line.check, "ok": line.ok, "text": line.text} for line in lines]}
