"""The tokenizer the data gate counts with, loaded without torch.

Counting tokens needs two things: the chat template rendered as the model sees it, and the
Rust tokenizer. ``AutoTokenizer`` gives both but imports transformers' model stack and torch,
4-6 s on a laptop, which ``make train`` would pay before every run only to count tokens. This
loads the same two parts directly: ``tokenizers.Tokenizer`` from ``tokenizer.json`` and the
template rendered by transformers' own renderer (``render_jinja_template``, what
``apply_chat_template`` calls, importable without torch), with the same special-token variables.
A directory without ``tokenizer.json`` (a SentencePiece-only tokenizer) gets ``AutoTokenizer``.
``tests/training/test_twins.py`` checks texts and counts against ``AutoTokenizer`` on every twin.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# transformers' named special tokens (``PreTrainedTokenizerBase.SPECIAL_TOKENS_ATTRIBUTES``),
# the variables ``apply_chat_template`` passes to every template.
SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
                  "mask_token")


class ChatTokenizer:
    """The part of a transformers tokenizer the gate uses: ``chat_template``,
    ``apply_chat_template(..., tokenize=False)``, ``backend_tokenizer`` (counts through its
    ``encode_batch_fast``) and ``name_or_path``."""

    def __init__(self, directory: Path, name_or_path: str | None = None) -> None:
        from tokenizers import Tokenizer

        self.name_or_path = name_or_path or str(directory)
        self.backend_tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        config = _json(directory / "tokenizer_config.json")
        self.chat_template = _template(directory, config)
        self.special_tokens_map = {k: _content(config[k]) for k in SPECIAL_TOKENS
                                   if config.get(k) is not None}

    def apply_chat_template(self, conversation: list[Any], *, tokenize: bool = False,
                            add_generation_prompt: bool = False) -> str | list[str]:
        if tokenize:
            raise NotImplementedError("ChatTokenizer renders text; count with backend_tokenizer")
        if not self.chat_template:
            raise ValueError(f"{self.name_or_path} has no chat template")
        from transformers.utils.chat_template_utils import render_jinja_template

        batched = bool(conversation) and isinstance(conversation[0], list | tuple)
        rendered, _ = render_jinja_template(
            conversations=conversation if batched else [conversation],
            chat_template=self.chat_template, add_generation_prompt=add_generation_prompt,
            **self.special_tokens_map)
        return rendered if batched else rendered[0]


def load(directory: Path | str, name_or_path: str | None = None) -> Any:
    """A ``ChatTokenizer`` for ``directory``, or ``AutoTokenizer`` when it has no tokenizer.json."""
    directory = Path(directory)
    if (directory / "tokenizer.json").is_file():
        return ChatTokenizer(directory, name_or_path)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(directory), local_files_only=True)


def cached_hub_dir(repo_id: str) -> Path | None:
    """The local snapshot of a Hub tokenizer (never downloaded), or ``None``."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, "tokenizer_config.json")
    except Exception:  # noqa: BLE001 - not a repo id the cache can parse
        return None
    return Path(found).parent if isinstance(found, str) else None


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _content(token: Any) -> str:
    """A special token as tokenizer_config.json writes it: a string or an AddedToken dict."""
    return str(token.get("content", "")) if isinstance(token, dict) else str(token)


def _template(directory: Path, config: dict[str, Any]) -> str | None:
    """The default chat template, where transformers 5 (``chat_template.jinja``) or 4
    (``tokenizer_config.json``, a string or a list of named templates) keeps it."""
    jinja = directory / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    template = config.get("chat_template")
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        return named.get("default")
    return template
