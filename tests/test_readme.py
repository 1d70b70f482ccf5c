"""The README's layout tree matches the folders on disk, both ways."""

from __future__ import annotations

import re

from clihelp import ROOT


def layout_tree() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("## How a recipe is made", 1)[1].split("```", 2)[1]
    return block.splitlines()


def test_every_path_in_the_layout_exists():
    parent = ""
    for line in layout_tree():
        m = re.match(r"^(\s*)(\S+/\S*)\s", line + " ")
        if not m or not m.group(2).rstrip("/"):
            continue
        name = m.group(2)
        if not m.group(1):
            parent = name if name.endswith("/") else parent
            path = ROOT / name
        else:
            path = ROOT / parent / name
        assert path.exists(), f"README layout names {path.relative_to(ROOT)}, which is missing"


def test_every_recipe_group_folder_is_in_the_layout():
    listed = {m.group(1) for line in layout_tree()
              if (m := re.match(r"^\s+(\S+?)/", line))}
    on_disk = {p.name for p in (ROOT / "recipes").iterdir() if p.is_dir()}
    assert on_disk <= listed, f"recipes/ folders missing from the README: {on_disk - listed}"
