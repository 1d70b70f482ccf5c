"""The two ways a tunebook command says no, mapped to the CLI's exit codes.

0 ok; 1 a gate or check said no (``CheckFailed``); 2 invalid input (``UserError``).
Both carry one message that names the file, line or key, what was expected and the fix;
``tunebook.cli`` prints it without a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TunebookError(Exception):
    exit_code = 2


class UserError(TunebookError):
    """Invalid input: a bad recipe name, override, YAML file, dataset or option."""

    exit_code = 2


class CheckFailed(TunebookError):
    """The input was valid but a gate or check decided against it."""

    exit_code = 1


def did_you_mean(word: str, choices: Iterable[str], n: int = 3) -> str:
    """`` (did you mean 'lora_r'?)`` for the closest choices, or an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=n, cutoff=0.6)
    if not close:
        return ""
    return " (did you mean " + " or ".join(f"'{c}'" for c in close) + "?)"
