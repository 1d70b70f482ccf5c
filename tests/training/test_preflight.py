"""``make preflight`` and the preflight ``make train`` runs before it launches (tier 1).

Every branch is driven through fake probes (``preflight.Probes``: the GPUs torch.cuda would
report, the Hugging Face cache and Hub answers, the token, free disk), never a real GPU or Hub:
GPU absent / present / too few / busy, fits / does not fit, model built here / local / cached /
reachable / unreachable / missing / gated, offline respected, low disk. The CLI tests run on this
machine as it is (``CUDA_VISIBLE_DEVICES=""`` hides a GPU where there is one).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from trainhelp import scratch_repo, tb

from tunebook.errors import CheckFailed
from tunebook.plan.estimate import estimate
from tunebook.training import distributed, preflight
from tunebook.training import run as lifecycle
from tunebook.validate import validate_recipe

QLORA = "mistral7b-qlora-support"  # meta.gpu rtx4090-24g, NF4, SDPA attention, a Hub model
HUB_ID = "mistralai/Mistral-7B-Instruct-v0.2"
GIB = 2**30
# Hand-counted (tests/plan/test_plan.py): Mistral 7B's parameters, and LoRA r32 on all 7 modules.
MISTRAL_PARAMS = 32 * 218_103_808 + 2 * 32000 * 4096 + 32 * 2 * 4096 + 4096
LORA_R32 = 32 * 32 * (8192 + 5120 + 5120 + 8192 + 18432 + 18432 + 18432)
RTX4090 = preflight.Device("NVIDIA GeForce RTX 4090", 23.99, 23.5)


def _config(name: str = QLORA, overrides: str = "") -> dict:
    return validate_recipe(name, overrides, deep=False).config


def _target(overrides: str = "", name: str = QLORA, gpus_per_node: int = 1) -> preflight.Target:
    return preflight.Target(name, _config(name, overrides), gpus_per_node=gpus_per_node)


def _never(*_args):
    raise AssertionError("this probe must not be asked")


def probes(**answers) -> preflight.Probes:
    """Fakes for every probe: one RTX 4090, the model cached, plenty of disk."""
    base = preflight.Probes(devices=lambda: [RTX4090], cached=lambda _repo: True, hub=_never,
                            token=lambda: False, offline=lambda: False,
                            cache_dir=lambda: Path("/nonexistent-hf-cache"),
                            disk_free=lambda _path: 1000 * GIB)
    return dataclasses.replace(base, **answers)


def _line(target: preflight.Target, check, fakes: preflight.Probes) -> preflight.Line:
    return check(target, fakes)


# -- the accelerator ---------------------------------------------------------------------------

def test_no_gpu_names_what_needs_one_and_the_cpu_alternatives():
    line = _line(_target(), preflight.check_accelerator, probes(devices=lambda: []))
    assert not line.ok
    for fragment in ("no CUDA GPU", "bitsandbytes 4-bit", "rtx4090-24g",
                     f"make smoke RECIPE={QLORA}", "tiny-lora-triage"):
        assert fragment in line.text, line.text
    assert "flash attention" not in line.text  # the recipe uses torch's SDPA


def test_flash_attention_is_named_among_what_needs_a_gpu():
    target = _target("axolotl.attn_implementation=flash_attention_2")
    line = _line(target, preflight.check_accelerator, probes(devices=lambda: []))
    assert not line.ok and "flash attention (axolotl.attn_implementation)" in line.text, line.text


def test_a_gpu_that_fits_is_named_with_its_memory_and_the_plan():
    target = _target()
    line = _line(target, preflight.check_accelerator, probes())
    assert line.ok, line.text
    peak = estimate(target.config, "rtx4090-24g", 1).peak_gb
    assert "NVIDIA GeForce RTX 4090 (24.0 GiB)" in line.text
    assert f"peak {peak:.1f} GiB fits {23.99 * 0.9:.1f} GiB usable" in line.text


def test_a_plan_that_does_not_fit_fails_with_the_planners_suggestions():
    overrides = "axolotl.sequence_len=8192 axolotl.micro_batch_size=8"
    target = _target(overrides)
    t4 = preflight.Device("Tesla T4", 15.0, 14.8)
    line = _line(target, preflight.check_accelerator, probes(devices=lambda: [t4]))
    assert not line.ok
    plan = estimate(target.config, "t4-16g", 1)
    assert not plan.fits
    fitting = [s for s in plan.suggestions if s.fits]
    assert fitting and fitting[0].overrides in line.text, line.text
    assert f"peak {plan.peak_gb:.1f} GiB does not fit {15.0 * 0.9:.1f} GiB usable" in line.text


def test_the_memory_the_gpu_reports_decides_not_the_table():
    """A MIG slice of an H100 is named like one, but holds 10 GiB, not 80."""
    mig = preflight.Device("NVIDIA H100 80GB HBM3 MIG 1g.10gb", 9.75, 9.5)
    target = _target("axolotl.sequence_len=4096")
    line = _line(target, preflight.check_accelerator, probes(devices=lambda: [mig]))
    plan = estimate(target.config, "h100-80g", 1)
    assert plan.fits and plan.peak_gb > 9.75 * 0.9  # the table's H100 would hold it, this not
    assert not line.ok and "does not fit 8.8 GiB usable" in line.text, line.text
    assert f"a GPU with at least {plan.peak_gb / 0.9:.0f} GiB" in line.text


def test_a_gpu_other_processes_fill_fails():
    busy = dataclasses.replace(RTX4090, free_gib=2.0)
    line = _line(_target(), preflight.check_accelerator, probes(devices=lambda: [busy]))
    assert not line.ok and "2.0 GiB free" in line.text and "nvidia-smi" in line.text


def test_fewer_gpus_than_the_launcher_uses():
    target = _target("launcher=ddp", gpus_per_node=4)
    line = _line(target, preflight.check_accelerator, probes(devices=lambda: [RTX4090] * 2))
    assert not line.ok
    assert "2 CUDA GPU(s) here, the launcher uses 4" in line.text
    assert "launcher.gpus_per_node=2" in line.text


def test_a_cuda_query_that_fails_is_a_failed_check_not_a_traceback():
    def broken():
        raise RuntimeError("torch.cuda did not answer within 60 s")
    line = _line(_target(), preflight.check_accelerator, probes(devices=broken))
    assert not line.ok and "did not answer within 60 s" in line.text


def test_a_cpu_recipe_needs_no_gpu_and_asks_nothing():
    target = _target(name="tiny-lora-triage")
    assert target.built_here and preflight.gpu_reasons(target) == []
    line = _line(target, preflight.check_accelerator, probes(devices=_never))
    assert line.ok and "no GPU needed" in line.text


@pytest.mark.parametrize(("name", "total", "gpu_id"), [
    ("NVIDIA A100-SXM4-80GB", 79.3, "a100-80g"),
    ("NVIDIA A100-PCIE-40GB", 39.4, "a100-40g"),
    ("NVIDIA GeForce RTX 4090", 23.99, "rtx4090-24g"),
    ("NVIDIA L4", 22.0, "l4-24g"),
    ("NVIDIA L40S", 44.4, None),  # L4 is not L40S
    ("Tesla T4", 15.0, "t4-16g"),
    ("NVIDIA A10G", 22.0, "a10g-24g"),
    ("NVIDIA H100 80GB HBM3", 79.1, "h100-80g"),
    ("NVIDIA H200", 139.8, "h200-141g"),
    ("AMD Instinct MI300X", 191.5, "mi300x-192g"),
])
def test_gpu_names_match_the_gpu_table(name, total, gpu_id):
    row = preflight.match_gpu(preflight.Device(name, total, total))
    assert (row.id if row else None) == gpu_id


# -- the base model ----------------------------------------------------------------------------

def test_a_cached_model_is_ok_without_asking_the_hub():
    line = _line(_target(), preflight.check_base_model, probes(cached=lambda _r: True))
    assert line.ok and "in the Hugging Face cache" in line.text


def test_offline_mode_is_respected():
    line = _line(_target(), preflight.check_base_model,
                 probes(cached=lambda _r: False, offline=lambda: True, hub=_never))
    assert not line.ok
    assert "HF_HUB_OFFLINE" in line.text and f"hf download {HUB_ID}" in line.text


def test_a_model_the_hub_serves_is_ok():
    line = _line(_target(), preflight.check_base_model,
                 probes(cached=lambda _r: False, hub=lambda _r: preflight.HubAnswer(True)))
    assert line.ok and "on the Hub" in line.text


def test_an_unreachable_hub_fails_with_its_error():
    answer = preflight.HubAnswer(reachable=False, error="no answer within 10 s")
    line = _line(_target(), preflight.check_base_model,
                 probes(cached=lambda _r: False, hub=lambda _r: answer))
    assert not line.ok and "no answer within 10 s" in line.text


def test_a_missing_model_fails():
    answer = preflight.HubAnswer(reachable=True, exists=False)
    line = _line(_target(), preflight.check_base_model,
                 probes(cached=lambda _r: False, hub=lambda _r: answer))
    assert not line.ok and "no such model on the Hub" in line.text


def test_a_gated_model_needs_a_token_with_access():
    gated = preflight.HubAnswer(reachable=True, gated=True)
    no_token = _line(_target(), preflight.check_base_model,
                     probes(cached=lambda _r: False, hub=lambda _r: gated))
    assert not no_token.ok and "hf auth login" in no_token.text
    refused = dataclasses.replace(gated, access=False)
    no_access = _line(_target(), preflight.check_base_model,
                      probes(cached=lambda _r: False, hub=lambda _r: refused, token=lambda: True))
    assert not no_access.ok and "no access yet" in no_access.text
    allowed = dataclasses.replace(gated, access=True)
    ok = _line(_target(), preflight.check_base_model,
               probes(cached=lambda _r: False, hub=lambda _r: allowed, token=lambda: True))
    assert ok.ok and "the token has access" in ok.text


def test_a_local_base_model_directory(tmp_path):
    model = tmp_path / "my-model"
    missing = _line(_target(f"axolotl.base_model={model}"), preflight.check_base_model,
                    probes(cached=_never))
    assert not missing.ok and "no model directory there" in missing.text
    model.mkdir()
    (model / "config.json").write_text("{}", encoding="utf-8")
    found = _line(_target(f"axolotl.base_model={model}"), preflight.check_base_model,
                  probes(cached=_never))
    assert found.ok and "a local model directory" in found.text


def test_the_real_hub_probe_answers_within_its_timeout():
    """The real probe (a subprocess) on a Hub that cannot be reached: an answer, not a hang."""
    answer = preflight.hub_answer("no-such-org/no-such-model")
    assert isinstance(answer, preflight.HubAnswer)
    if not answer.reachable:
        assert answer.error


# -- disk --------------------------------------------------------------------------------------

def _needed_bytes() -> int:
    """Mistral QLoRA r32, paged 8-bit AdamW, save_total_limit 3, bf16 on its rtx4090-24g:
    3 checkpoints x (fp32 adapter 4 B + 8-bit AdamW 2 B) + the final fp32 adapter + the merged
    bf16 model."""
    return 3 * LORA_R32 * (4 + 2) + LORA_R32 * 4 + MISTRAL_PARAMS * 2


def test_disk_enough_and_too_little():
    need = _needed_bytes()
    ok = _line(_target(), preflight.check_disk, probes(disk_free=lambda _p: need + 2**20))
    assert ok.ok, ok.text
    assert "3 checkpoint(s) x 480 MiB + final adapter 320 MiB + merged model 13.5 GiB" in ok.text
    low = _line(_target(), preflight.check_disk, probes(disk_free=lambda _p: need - 2**20))
    assert not low.ok and "axolotl.save_total_limit=1" in low.text


def test_disk_counts_the_download_of_a_model_not_in_the_cache():
    """A Hugging Face cache on the file system of runs/ (here: the repository root) must hold
    the checkpoints, the merged model and the download together."""
    need = _needed_bytes()
    fakes = probes(cached=lambda _r: False, cache_dir=lambda: preflight.paths.ROOT,
                   disk_free=lambda _p: need + 2**20)
    line = _line(_target(), preflight.check_disk, fakes)
    assert not line.ok and "+ base model download 13.5 GiB)" in line.text, line.text
    roomy = dataclasses.replace(fakes, disk_free=lambda _p: need + MISTRAL_PARAMS * 2 + 2**20)
    assert _line(_target(), preflight.check_disk, roomy).ok


# -- the checks as data, and the verdict -------------------------------------------------------

def test_the_checks_are_data_and_run_in_order():
    expected = (preflight.check_accelerator, preflight.check_base_model, preflight.check_disk)
    assert expected == preflight.CHECKS
    lines = preflight.run_checks(_target(), probes(devices=lambda: []))
    assert [line.check for line in lines] == ["accelerator", "base model", "disk"]
    assert [line.ok for line in lines] == [False, True, True]
    verdict = preflight.failure(_target(), lines)
    assert verdict and "1 of 3 checks failed (accelerator)" in verdict


def test_train_stops_on_a_failed_preflight_unless_forced(capsys):
    config = _config()
    target = preflight.Target.of(QLORA, config, distributed.topology(config))
    absent = probes(devices=lambda: [])
    with pytest.raises(CheckFailed) as info:
        lifecycle.check_preflight(target, probes=absent)
    assert "FORCE=1" in str(info.value)
    with pytest.raises(CheckFailed) as info:  # RESUME refuses FORCE: no hint to use it
        lifecycle.check_preflight(target, resuming=True, probes=absent)
    assert "FORCE" not in str(info.value)
    recorded = lifecycle.check_preflight(target, force=True, probes=absent)
    assert recorded["preflight"]["passed"] is False
    assert recorded["preflight"]["checks"][0]["check"] == "accelerator"
    assert "launching anyway (FORCE=1)" in capsys.readouterr().err
    tiny = _config("tiny-lora-triage")
    tiny_target = preflight.Target.of("tiny-lora-triage", tiny, distributed.topology(tiny))
    assert lifecycle.check_preflight(tiny_target, probes=probes(devices=_never)) == {}


# -- the CLI, on this machine ------------------------------------------------------------------

@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return scratch_repo(tmp_path_factory.mktemp("preflight") / "repo")


def test_train_of_the_headline_recipe_without_a_gpu_fails_before_anything_is_written(repo):
    r = tb(repo, "train", "--recipe", QLORA, env={"CUDA_VISIBLE_DEVICES": "",
                                                  "HF_TOKEN": "hf_preflightsecret"})
    assert r.code == 1, r.text
    assert "Traceback" not in r.text
    assert "fail  accelerator  no CUDA GPU" in r.out
    assert f"make smoke RECIPE={QLORA}" in r.out and "tiny-lora-triage" in r.out
    assert "preflight of mistral7b-qlora-support: " in r.err and "accelerator" in r.err
    assert "hf_preflightsecret" not in r.text  # a token is never printed
    assert not (repo / "runs").exists()  # refused before the data gate and render


def test_preflight_of_the_embedded_recipe_passes(repo):
    r = tb(repo, "preflight")
    assert r.code == 0, r.text
    assert [line.split()[0] for line in r.out.splitlines()[1:4]] == ["ok", "ok", "ok"]
    assert "every check passed" in r.out


def test_a_dry_run_skips_the_preflight(repo):
    r = tb(repo, "train", "--recipe", QLORA, "--dry-run", env={"CUDA_VISIBLE_DEVICES": ""})
    assert r.code == 0, r.text
    assert "preflight of" not in r.out
    (run,) = (repo / "runs" / QLORA).glob("*/manifest.json")
    recorded = json.loads(run.read_text())
    assert recorded["status"] == "dry-run" and "preflight" not in recorded


def test_force_launches_anyway_and_the_manifest_records_the_failed_checks(repo):
    """FORCE=1 past a failed preflight: the run is rendered with the checks in its manifest
    (here the launch then fails, offline and without the model, exactly as predicted)."""
    before = set((repo / "runs" / QLORA).glob("*")) if (repo / "runs" / QLORA).is_dir() else set()
    r = tb(repo, "train", "--recipe", QLORA, "--force", env={"CUDA_VISIBLE_DEVICES": ""})
    assert "Traceback" not in r.err, r.text
    assert "launching anyway (FORCE=1)" in r.err
    (run,) = set((repo / "runs" / QLORA).glob("*")) - before
    recorded = json.loads((run / "manifest.json").read_text())
    assert recorded["forced"] is True and recorded["preflight"]["passed"] is False
    checks = {c["check"]: c["ok"] for c in recorded["preflight"]["checks"]}
    assert checks == {"accelerator": False, "base model": False, "disk": True}
    assert "data_gate" in recorded  # both gates are recorded, neither replaces the other
