"""Every recipe found on disk composes, validates and reads like a recipe: the four-line header
(purpose, the exact make line, planned hardware, suites and status), a short delta, and a
`# why:` on every value that departs from its groups."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tunebook import compose, paths
from tunebook.validate import validate_recipe

RECIPES = compose.recipe_names()
CATALOGUE = [n for n in RECIPES if not n.startswith("tiny-")]  # the real-model catalogue


def test_discovery_finds_every_recipe_file_recursively():
    """Recipes are the YAML files directly in recipes/; none hides in a subfolder by mistake."""
    on_disk = {p for p in paths.RECIPES.rglob("*.yaml") if ".lock" not in p.parts}
    in_groups = {p for p in on_disk if p.parent != paths.RECIPES}
    for p in in_groups:
        assert p.parent.name in paths.GROUPS or p.parent.parent.name in paths.GROUPS or \
            p.parent.name == "hardware", f"{p} is neither a recipe nor in a config group"
    assert sorted(p.stem for p in on_disk - in_groups) == RECIPES
    assert len(RECIPES) >= 12


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_composes_and_validates(name: str):
    result = validate_recipe(name)
    cfg = result.config
    assert set(cfg) == set(compose.SECTIONS)
    assert cfg["meta"]["status"] in ("stable", "dev", "archived")


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_header_and_shape(name: str):
    file = paths.RECIPES / f"{name}.yaml"
    lines = file.read_text(encoding="utf-8").splitlines()
    cfg = validate_recipe(name, axolotl=False).config  # eval.suites: enabled, primary first
    assert re.match(rf"^# {re.escape(name)}: \S", lines[0]), "line 1: '# <name>: <purpose>'"
    assert f"make train RECIPE={name}" in lines[1], "line 2 must be the exact make train line"
    assert lines[2].startswith("# Planned:"), "line 3: the hardware it was planned for"
    suites = re.search(r"# Suites:\s+(.*?)\s+Status:\s+(\w+)", lines[3])
    assert suites, "line 4: '# Suites: ...  Status: ...'"
    assert [s.strip() for s in suites.group(1).split(",")] == cfg["eval"]["suites"]
    assert suites.group(2) == cfg["meta"]["status"]
    assert len(lines) <= 32, f"{len(lines)} lines: a recipe is a short delta"
    assert name.split("-")[1] == cfg["meta"]["method"]["name"].split("-")[0], \
        "<model><size>-<method>-<task>: the method part names the method group"


@pytest.mark.parametrize("name", RECIPES)
def test_every_departure_from_the_groups_says_why(name: str):
    """Inside the recipe's axolotl/data/eval sections each leaf value carries a `# why`."""
    text = (paths.RECIPES / f"{name}.yaml").read_text(encoding="utf-8")
    section = None
    for line in text.splitlines():
        if re.match(r"^[a-z_]+:", line):
            section = line.split(":")[0]
            continue
        if section in ("axolotl", "data", "eval") and re.match(r"^\s+[\w.-]+:\s*\S", line):
            assert "# why:" in line, f"{name}: value without '# why:': {line.strip()}"


def test_catalogue_covers_every_option():
    used: dict[str, set[str]] = {g: set() for g in ("model", "method", "task")}
    for name in CATALOGUE:
        choices = compose.compose_recipe(name, with_sources=True).choices
        for group in used:
            used[group].add(choices[group])
    for group, options in used.items():
        real = {o for o in compose.group_options(group) if not o.startswith("tiny")}
        assert real <= options, f"{group} options without a recipe: {real - options}"
    assert "mistral7b-qlora-support" in CATALOGUE


HAND_WRITTEN = [p for p in sorted(paths.RECIPES.rglob("*.yaml")) if ".lock" not in p.parts]


@pytest.mark.parametrize("file", HAND_WRITTEN, ids=lambda p: paths.rel(p))
def test_config_files_open_with_a_comment_and_parse(file: Path):
    text = file.read_text(encoding="utf-8")
    assert text.startswith("#"), f"{paths.rel(file)} must open with a comment saying what it is"
    yaml.safe_load(text)


def test_model_groups_carry_planner_numbers():
    for option in compose.group_options("model"):
        meta = yaml.safe_load((paths.RECIPES / "model" / f"{option}.yaml").read_text())["meta"]
        model = meta["model"]
        for key in ("params_b", "layers", "hidden_size", "heads", "kv_heads",
                    "intermediate_size", "vocab_size", "max_positions", "lora_target_modules",
                    "licence"):
            assert key in model, f"model/{option}.yaml lacks meta.model.{key}"
