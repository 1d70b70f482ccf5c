"""Notices meant for library authors stay out of what tunebook prints; other warnings do not."""

from __future__ import annotations

import subprocess
import sys

IMPORTS = "import logging, peft; logging.getLogger('torch.utils._pytree').warning('still shown?')"


def _stderr(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=300).stderr


def test_the_pytree_deprecation_is_hushed_and_errors_still_show():
    hushed = _stderr("from tunebook import env; env.hush_library_notices(); " + IMPORTS
                     + "; logging.getLogger('torch.utils._pytree').error('an error')")
    assert "_pytree.py" not in hushed and "still shown?" not in hushed
    assert "an error" in hushed
    # and any other logger's warnings still reach the user
    assert "other warning" in _stderr("from tunebook import env; env.hush_library_notices(); "
                                      "import logging; logging.getLogger('torch.x').warning("
                                      "'other warning')")
