"""The calibration table (scripts/bench/calibration.yaml) and the bench that reads it."""

from __future__ import annotations

import re

import pytest

from clihelp import ROOT, load_script

BENCH = ROOT / "scripts" / "bench" / "plan.py"
KINDS = {"measured", "upper_bound", "max_context", "formula", "not_modelled"}
METRICS = {"torch_reserved", "torch_allocated", "nvidia_smi", "capacity", "model_states"}


bench = load_script(BENCH, "bench_plan")
POINTS = bench.load()


def test_every_point_is_complete_and_cited():
    ids = [p["id"] for p in POINTS]
    assert len(ids) == len(set(ids)) and len(ids) >= 8
    for p in POINTS:
        assert p["kind"] in KINDS, p["id"]
        assert p["metric"] in METRICS, p["id"]
        assert p["value_gib"] > 0
        assert re.search(r"https?://", p["source"]) or p["source"].startswith(
            "scripts/bench/gpu_memory.py on "), f"{p['id']}: source needs a URL or our bench"
        for key in ("layers", "hidden_size", "heads", "kv_heads", "intermediate_size",
                    "vocab_size", "tie_embeddings", "family"):
            assert key in p["model"], (p["id"], key)
        assert {"sequence_len", "micro_batch_size", "optimizer"} <= set(p["axolotl"]), p["id"]
        if p["kind"] == "not_modelled":
            assert p.get("expected_miss"), f"{p['id']}: say why it is not modelled"
    # the reference points the brief names are all there
    for needed in ("qlora-paper-65b", "axolotl-pr708", "artidoro-qlora-193", "unsloth-hf-fa2",
                   "torchtune-llama31-8b-qlora", "zero-paper"):
        assert any(i.startswith(needed) for i in ids), needed


def test_model_sizes_in_the_table_are_right():
    """The architecture numbers give each model's published parameter count (within 1%)."""
    from tunebook.plan.arch import Arch

    for p in POINTS:
        arch = Arch.from_config(bench.config_of(p))
        assert abs(arch.total_params / 1e9 - p["model"]["params_b"]) / p["model"]["params_b"] \
            < 0.01, p["id"]


@pytest.mark.parametrize("point", POINTS, ids=[p["id"] for p in POINTS])
def test_estimate_vs_reference(point):
    r = bench.evaluate(point)
    if point["kind"] == "not_modelled":
        assert r.ok is None
    elif point.get("expected_miss"):
        assert r.ok is False, f"{r.id} now meets the target: drop its expected_miss"
    elif point["kind"] == "upper_bound":
        # it fit in that much memory: the planner must agree, and not by a vacuous margin
        assert r.estimate_gib <= r.reference_gib and r.estimate_gib > 0.5 * r.reference_gib
    else:
        assert bench.within(r.error), f"{r.id}: {r.error:+.1%}"


def test_bench_prints_the_table(capsys):
    assert bench.main([]) == 0
    out = capsys.readouterr().out
    assert "estimate GiB" in out and "qlora-paper-65b-48gb" in out
    assert "within target" in out and "unexplained misses: none" in out
    assert "why it misses" in out  # the known misses say why
