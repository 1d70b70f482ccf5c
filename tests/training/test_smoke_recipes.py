"""Every recipe on disk still *trains*: a few steps on its tiny CPU twin through the real
Axolotl (LoRA, QLoRA with 4-bit loading, full, DPO), with a finite loss and an adapter or
checkpoint written (smoke tier; ~20-60 s per recipe on 2 cores)."""

from __future__ import annotations

import pytest
from trainhelp import manifest, runs_of, scratch_repo, tb

from tunebook.compose import recipe_names

pytestmark = pytest.mark.smoke


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return scratch_repo(tmp_path_factory.mktemp("smoke") / "repo")


@pytest.mark.parametrize("name", recipe_names())
def test_recipe_trains_on_its_twin(repo, name):
    r = tb(repo, "smoke", "--recipe", name)
    assert r.code == 0, r.text
    assert f"ok   {name}" in r.out
    (run,) = runs_of(repo, name)[-1:]
    assert run.name.endswith("-smoke")
    m = manifest(run)
    assert m["status"] == "completed" and m["smoke"] is True
    assert m["metrics"]["all_finite"] and m["metrics"]["steps"] == m["metrics"]["max_steps"]
    out = run / "output"
    assert any((out / f).is_file() for f in ("adapter_model.safetensors", "model.safetensors"))
    four_bit = m["metrics"]["linear4bit_layers"]  # bitsandbytes 4-bit layers in the model
    assert (four_bit > 0) == (m["choices"].get("method") == "qlora"), four_bit
