"""`tunebook plan` end to end: exit 0 when it fits, 1 when it does not, 2 on bad input."""

from __future__ import annotations

import json

from clihelp import assert_user_error, run_tunebook

RECIPE = "mistral7b-qlora-support"


def test_fits_on_a_4090_and_writes_json(tmp_path):
    out = tmp_path / "plan.json"
    r = run_tunebook("plan", "--recipe", RECIPE, "--gpu", "rtx4090-24g", "--json", str(out))
    assert r.code == 0, r.text
    assert "verdict: fits" in r.out and "LoRA adapters" in r.out and "assumptions" in r.out
    plan = json.loads(out.read_text())
    assert plan["fits"] is True and 6 < plan["peak_gb"] < 20
    assert abs(sum(t["gb"] for t in plan["breakdown"]) - plan["peak_gb"]) < 1e-2
    assert plan["gpu"] == "rtx4090-24g" and plan["gpus"] == 1


def test_full_fine_tune_does_not_fit_and_suggests(tmp_path):
    out = tmp_path / "plan.json"
    r = run_tunebook("plan", "--recipe", RECIPE, "--gpu", "rtx4090-24g", "--overrides",
                     "method=full", "--json", str(out))
    assert r.code == 1, r.text
    assert "Traceback" not in r.text
    assert "does not fit" in r.out and "to make it fit" in r.out
    plan = json.loads(out.read_text())  # written whether or not it fits
    assert plan["fits"] is False and plan["peak_gb"] > 24
    fitting = [s for s in plan["suggestions"] if s["fits"]]
    assert any("QLoRA" in s["change"] for s in fitting)
    assert any("ZeRO-3" in s["change"] for s in fitting)
    assert all(s["peak_gb"] < plan["peak_gb"] for s in plan["suggestions"]
               if "bigger GPU" not in s["change"])


def test_gpus_and_price_options(tmp_path):
    out = tmp_path / "plan.json"
    r = run_tunebook("plan", "--recipe", RECIPE, "--gpu", "a100-80g", "--gpus", "2",
                     "--price", "3.5", "--json", str(out))
    assert r.code == 0, r.text
    plan = json.loads(out.read_text())
    assert plan["gpus"] == 2 and plan["time"]["price_per_hour"] == 3.5


def test_default_gpu_is_the_recipes(tmp_path):
    out = tmp_path / "plan.json"
    assert run_tunebook("plan", "--recipe", RECIPE, "--json", str(out)).code == 0
    assert json.loads(out.read_text())["gpu"] == "rtx4090-24g"  # meta.gpu


def test_unknown_gpu_lists_the_known_ones():
    r = run_tunebook("plan", "--recipe", RECIPE, "--gpu", "rtx4900-24g")
    assert_user_error(r, "unknown GPU 'rtx4900-24g'", "did you mean 'rtx4090-24g'", "a100-80g")


def test_unknown_recipe_is_exit_2():
    r = run_tunebook("plan", "--recipe", "mistral7b-qlora-suport", "--gpu", "rtx4090-24g")
    assert_user_error(r, "unknown recipe", "mistral7b-qlora-support")


def test_bad_gpu_count_is_exit_2():
    r = run_tunebook("plan", "--recipe", RECIPE, "--gpus", "0")
    assert r.code == 2 and "Traceback" not in r.text and "at least 1 GPU" in r.err


def test_prints_packing_efficiency_and_hours_follow_processed_tokens(tmp_path):
    """Unpacked and packed, the same data: packing processes fewer tokens, so fewer hours."""
    plans = {}
    for name, overrides in (("unpacked", "axolotl.sample_packing=false "
                                         "axolotl.eval_sample_packing=false"),
                            ("packed", "axolotl.sample_packing=true")):
        out = tmp_path / f"{name}.json"
        r = run_tunebook("plan", "--recipe", RECIPE, "--gpu", "rtx4090-24g", "--overrides",
                         overrides, "--json", str(out))
        assert r.code == 0, r.text
        assert "packing efficiency" in r.out and "processed tokens per epoch" in r.out
        plans[name] = json.loads(out.read_text())["time"]
    unpacked, packed = plans["unpacked"], plans["packed"]
    assert unpacked["tokens_per_epoch"] == packed["tokens_per_epoch"]  # the same useful tokens
    assert 0 < unpacked["packing_efficiency"] < packed["packing_efficiency"] <= 1
    for t in (unpacked, packed):
        assert t["packing_efficiency"] == t["tokens_per_epoch"] / t["processed_tokens_per_epoch"]
    assert packed["hours"] < unpacked["hours"]
    assert packed["steps_per_epoch"] < unpacked["steps_per_epoch"]
