"""Secrets never land in a run directory, a manifest or MLflow: ``redact`` replaces them.

A key counts as a credential when a credential word is a whole component of its name
(``hub_token``, ``wandb_api_key``, ``HF_TOKEN``), not when it merely contains one
(``max_new_tokens``, ``tokenizer_type`` are settings). Inside strings (an OVERRIDES string holds
several assignments) any ``...token...=value`` and anything shaped like a Hugging Face token is
replaced too.
"""

from __future__ import annotations

import re
from typing import Any

# A credential word as a whole component of a key name: hub_token, wandb_api_key, HF_TOKEN;
# not max_new_tokens or tokenizer_type, which are settings.
_SECRET_WORD = r"(?:token|secret|password|passwd|api_?key|credentials?)"
SECRET_KEY = re.compile(rf"(?:^|[_.\-]){_SECRET_WORD}(?:$|[_.\-])", re.I)
REDACTED = "<redacted>"
SECRET_ASSIGNMENT = re.compile(
    rf"((?:[^\s=]*[_.\-])?{_SECRET_WORD}(?:[_.\-][^\s=]*)?=)[^\s]+", re.I)
HF_TOKEN_VALUE = re.compile(r"\bhf_[A-Za-z0-9]{8,}")


def redact(value: Any, key: str = "") -> Any:
    """Replace values of credential-like keys (and overrides setting them) with a marker."""
    if isinstance(value, dict):
        return {k: (REDACTED if SECRET_KEY.search(str(k)) and v is not None
                    else redact(v, str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    if isinstance(value, str):
        # any `...token...=value` inside a string (an OVERRIDES string holds several), and
        # anything shaped like a Hugging Face token
        value = SECRET_ASSIGNMENT.sub(lambda m: m.group(1) + REDACTED, value)
        return HF_TOKEN_VALUE.sub(REDACTED, value)
    return value
