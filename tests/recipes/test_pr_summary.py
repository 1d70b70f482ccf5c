"""``make pr-summary REF=``: the Markdown a reviewer reads on a recipe pull request.

Each test commits a scratch copy of the recipes to git, edits the work tree the way a pull
request would, and runs the real ``tunebook pr-summary`` against ``HEAD``.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from clihelp import ROOT, assert_user_error, run_tunebook
from tunebook import compose
from tunebook.plan.estimate import estimate

QLORA = Path("recipes") / "method" / "qlora.yaml"


@pytest.fixture
def pr_root(scratch_root: Path) -> Path:
    """``scratch_root`` committed to git (the base of the pull request); ``.cache/`` is the
    repository's, so the planner's tokenizers and token counts are built once."""
    (ROOT / ".cache").mkdir(exist_ok=True)
    (scratch_root / ".cache").symlink_to(ROOT / ".cache")
    for args in (["init", "-q"], ["add", "recipes"],
                 ["-c", "user.email=t@example.invalid", "-c", "user.name=t", "commit", "-qm",
                  "base"]):
        subprocess.run(["git", *args], cwd=scratch_root, check=True, capture_output=True)
    return scratch_root


def _summary(root: Path, *args: str) -> str:
    result = run_tunebook("pr-summary", "--ref", "HEAD", *args, root=root)
    assert result.code == 0, result.text
    assert "Traceback" not in result.text
    return result.out


def _listed(markdown: str) -> dict[str, str]:
    """``{recipe: status}`` of the recipes the summary lists."""
    return dict(re.findall(r"^### `([^`]+)` \((added|removed|changed)\)$", markdown, re.M))


def _section(markdown: str, name: str) -> str:
    return markdown.split(f"### `{name}`", 1)[1].split("\n### ", 1)[0]


def _row(section: str, label: str) -> list[str]:
    line = next(x for x in section.splitlines() if x.startswith(f"| {label} |"))
    return [cell.strip() for cell in line.strip("|").split("|")[1:]]


def _peak(root: Path, name: str) -> str:
    config = compose.compose_recipe(name, recipes_dir=root / "recipes").config
    return f"{estimate(config, config['meta']['gpu'], suggest=False).peak_gb:.1f} GiB"


def test_no_change_is_one_line(pr_root):
    out = _summary(pr_root)
    assert out == ("No recipe changed its resolved config since `HEAD`; "
                   "lock-check: passes.\n")


def test_a_method_edit_lists_exactly_the_qlora_recipes(pr_root):
    qlora = pr_root / QLORA
    text = qlora.read_text()
    assert "  learning_rate: 2.0e-4" in text
    qlora.write_text(text.replace("  learning_rate: 2.0e-4", "  learning_rate: 3.0e-4"))
    expected = sorted(n for n in compose.recipe_names(pr_root / "recipes") if "-qlora-" in n)
    assert len(expected) >= 3

    out = _summary(pr_root)
    assert _listed(out) == dict.fromkeys(expected, "changed")
    for name in expected:
        section = _section(out, name)
        rows = [x for x in section.splitlines() if x.startswith("| `")]
        assert rows == ["| `axolotl.learning_rate` | `0.0002` | `0.0003` | "
                        "`recipes/method/qlora.yaml` |"], section
        assert _row(section, "GPU")[0] == _row(section, "GPU")[1] != "—"
        assert "validate: passes" in section
    # the snapshots in recipes/.lock/ are now stale: lock-check fails, naming them
    lock = next(x for x in out.splitlines() if "lock-check:" in x)
    assert "lock-check: fails: " in lock and all(f"`{n}`" in lock for n in expected)


def test_raising_lora_r_shows_peak_memory_before_and_after(pr_root):
    name = "mistral7b-qlora-support"
    recipe = pr_root / "recipes" / f"{name}.yaml"
    text = recipe.read_text()
    assert "  lora_r: 32 " in text
    before = _peak(pr_root, name)
    recipe.write_text(text.replace("  lora_r: 32 ", "  lora_r: 128 "))
    after = _peak(pr_root, name)
    assert before != after

    out = _summary(pr_root)
    assert list(_listed(out)) == [name]
    section = _section(out, name)
    assert (f"| `axolotl.lora_r` | `32` | `128` | `recipes/{name}.yaml` |"
            in section.splitlines())
    peak = _row(section, "peak memory")
    assert peak[0].startswith(before) and peak[1].startswith(after), peak
    hours, cost = _row(section, "time"), _row(section, "cost")
    assert "—" not in hours + cost, (hours, cost)


def test_added_removed_and_invalid_recipes_and_the_smoke_list(pr_root):
    recipes = pr_root / "recipes"
    (recipes / "llama8b-lora-support.yaml").rename(recipes / "llama8b-lora-support2.yaml")
    tiny = recipes / "tiny-lora-triage.yaml"
    text = tiny.read_text()
    assert "  status: stable\n" in text and "  gpu:" not in text  # its profile sets meta.gpu
    tiny.write_text(text.replace("  status: stable\n", "  status: stable\n  gpu: no-such-gpu\n"))
    out = _summary(pr_root)
    assert _listed(out) == {"llama8b-lora-support": "removed",
                            "llama8b-lora-support2": "added", "tiny-lora-triage": "changed"}
    added = _section(out, "llama8b-lora-support2")
    assert "make show RECIPE=llama8b-lora-support2" in added
    assert _row(added, "peak memory")[0] == "—" and "GiB" in _row(added, "peak memory")[1]
    assert "validate: passes" in added
    removed = _section(out, "llama8b-lora-support")
    assert "GiB" in _row(removed, "peak memory")[0] and _row(removed, "peak memory")[1] == "—"
    assert "validate:" not in removed
    # a recipe that no longer validates: the verdict and the planner say why
    broken = _section(out, "tiny-lora-triage")
    assert "| `meta.gpu` | `cpu` | `no-such-gpu` | `recipes/tiny-lora-triage.yaml` |" in broken
    assert "validate: **fails**" in broken and "unknown GPU 'no-such-gpu'" in broken
    assert _row(broken, "peak memory")[1].startswith("not planned: unknown GPU")
    # what the pull-request workflow smoke-trains: added and changed, never removed
    assert _summary(pr_root, "--changed").split() == ["llama8b-lora-support2",
                                                      "tiny-lora-triage"]


def test_an_unknown_ref_is_a_clear_error(pr_root):
    result = run_tunebook("pr-summary", "--ref", "no-such-branch", root=pr_root)
    assert_user_error(result, "REF=no-such-branch")
