"""Locked snapshots: current in the repo, stale exactly where a group edit reaches, diffable."""

from __future__ import annotations

import subprocess

from clihelp import run_tunebook
from tunebook import compose, lock


def test_committed_snapshots_are_current():
    assert lock.stale() == {}, "run `make lock` and commit recipes/.lock/"


def _edit_qlora(root):
    qlora = root / "recipes" / "method" / "qlora.yaml"
    text = qlora.read_text()
    assert "  learning_rate: 2.0e-4" in text
    qlora.write_text(text.replace("  learning_rate: 2.0e-4", "  learning_rate: 3.0e-4"))


def test_editing_qlora_group_names_exactly_the_qlora_recipes(scratch_root):
    assert run_tunebook("lock", root=scratch_root).code == 0  # start from current snapshots
    expected = sorted(
        n for n in compose.recipe_names()
        if compose.compose_recipe(n, with_sources=True).choices["method"] == "qlora"
        and "learning_rate" not in (scratch_root / "recipes" / f"{n}.yaml").read_text()
    )
    assert len(expected) >= 3
    _edit_qlora(scratch_root)
    result = run_tunebook("lock", "--check", root=scratch_root)
    assert result.code == 1, result.text
    assert "Traceback" not in result.text
    named = sorted(line.split(":")[0].strip() for line in result.err.splitlines()
                   if line.startswith("  "))
    assert named == expected


def test_lock_then_check_passes_and_orphans_are_removed(scratch_root):
    _edit_qlora(scratch_root)
    (scratch_root / "recipes" / ".lock" / "gone-recipe.yaml").write_text("x: 1\n")
    assert run_tunebook("lock", root=scratch_root).code == 0
    assert not (scratch_root / "recipes" / ".lock" / "gone-recipe.yaml").exists()
    assert run_tunebook("lock", "--check", root=scratch_root).code == 0


def test_diff_shows_the_changed_key_against_a_git_ref(scratch_root):
    def git(*args):
        subprocess.run(["git", *args], cwd=scratch_root, check=True, capture_output=True)

    git("init", "-q")
    git("add", "recipes")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "base")
    _edit_qlora(scratch_root)
    result = run_tunebook("diff", "--recipe", "mistral7b-qlora-support", "--ref", "HEAD",
                          root=scratch_root)
    assert result.code == 0, result.text
    assert "-  learning_rate: 0.0002" in result.out
    assert "+  learning_rate: 0.0003" in result.out
    every = run_tunebook("diff", "--ref", "HEAD", root=scratch_root)
    assert "mistral7b-qlora-support" in every.out and "qwen7b-qlora-triage" in every.out
    assert "llama8b-lora-support (resolved)" not in every.out
    bad = run_tunebook("diff", "--ref", "no-such-ref", root=scratch_root)
    assert bad.code == 2 and "REF=no-such-ref" in bad.err
