"""The repository stands on its own: no document outside it is cited, no machine path is written.

Every tracked text file is read (tests included): knowledge the code relies on belongs in the
project (a README beside the code, a docstring), and an absolute path of the machine a file was
written on breaks on every other machine.
"""

from __future__ import annotations

import re
import subprocess

from clihelp import ROOT

OUTSIDE_DOCS = re.compile(r"DESIGN\.md|STYLE\.md|reliability\.md|verified-[a-z-]+\.md"
                          r"|shared/reference")
MACHINE_PATHS = re.compile(r"(?<![\w.])/(?:work|root|home/\w+|Users/\w+)/")
ALLOWED = {"tests/test_self_contained.py"}  # the patterns themselves


def tracked_text_files() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.split()
    return [f for f in out if f not in ALLOWED and not f.startswith("tests/fixtures/")]


def test_no_document_outside_the_repository_is_cited_and_no_machine_path_written():
    problems = []
    for name in tracked_text_files():
        try:
            text = (ROOT / name).read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError):
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if OUTSIDE_DOCS.search(line) or MACHINE_PATHS.search(line):
                problems.append(f"{name}:{n}: {line.strip()[:100]}")
    assert not problems, "\n".join(problems)
