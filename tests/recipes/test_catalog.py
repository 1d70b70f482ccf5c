"""make help / list / show, and the generated README table."""

from __future__ import annotations

import re
import subprocess

from clihelp import ROOT, run_tunebook
from tunebook import catalog, compose


def test_make_without_target_prints_help_listing_every_target():
    proc = subprocess.run(["make"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    makefile = (ROOT / "Makefile").read_text()
    targets = re.findall(r"^([a-z-]+):.*## ", makefile, re.M)
    assert len(targets) >= 25
    for target in targets:
        assert re.search(rf"^\s+\S*{re.escape(target)}\S*\s+\S", proc.stdout, re.M), target


def test_every_make_target_is_one_tunebook_line():
    makefile = (ROOT / "Makefile").read_text()
    for block in re.findall(r"^[a-z-]+: setup ##.*\n((?:\t.*\n)+)", makefile, re.M):
        assert len(block.strip().splitlines()) == 1, block


def test_list_shows_every_recipe():
    result = run_tunebook("list")
    assert result.code == 0, result.text
    names = compose.recipe_names()
    assert len(names) >= 12
    for name in names:
        assert name in result.out


def test_show_names_the_file_behind_each_value():
    text = catalog.show("mistral7b-qlora-support", None)
    assert re.search(r"lora_r: 32 +# recipes/mistral7b-qlora-support.yaml", text)
    assert re.search(r"optimizer: paged_adamw_8bit +# recipes/method/qlora.yaml", text)
    assert re.search(r"lora_dropout: 0.05 +# recipes/method/lora.yaml", text)
    assert re.search(r"max_pii: 0 +# default", text)
    text = catalog.show("mistral7b-qlora-support", "axolotl.lora_r=8")
    assert re.search(r"lora_r: 8 +# override", text)


def test_readme_recipe_table_is_generated_and_current():
    readme = (ROOT / "README.md").read_text()
    assert catalog.readme_table() in readme, "run `make catalog`"
