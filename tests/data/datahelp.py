"""Helpers for the data tests: row builders, an in-process CLI runner, a small tokenizer."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest

SYSTEM = "You are helpful."


def chat(user: str, assistant: str, system: str | None = SYSTEM) -> dict:
    msgs = [{"role": "system", "content": system}] if system else []
    return {"messages": [*msgs, {"role": "user", "content": user},
                         {"role": "assistant", "content": assistant}]}


def jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def distinct_rows(n: int, seed: int = 0) -> list[dict]:
    """n chat rows that are far from each other (no accidental near-duplicates)."""
    import random

    rng = random.Random(seed)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9)))
             for _ in range(4000)]
    return [chat(" ".join(rng.choice(words) for _ in range(12)) + "?",
                 " ".join(rng.choice(words) for _ in range(20)) + ".") for _ in range(n)]


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str]:
    """``tunebook <argv>`` in-process through the real ``tunebook.cli.main`` (its error
    handling and exit codes)."""
    from tunebook import cli

    code = cli.main(list(argv))
    cap = capsys.readouterr()
    return code, cap.out + cap.err


@cache
def tokenizer():
    """A byte-level BPE tokenizer trained here on the shipped data, with a ChatML-like
    template: what a twin's tokenizer is, without depending on tunebook.twins."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from tunebook.paths import DATA_TEMPLATES

    texts = []
    for f in sorted((DATA_TEMPLATES / "datasets").glob("*/train.jsonl")):
        texts += f.read_text(encoding="utf-8").splitlines()[:200]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<s>", "</s>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")
    hf.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
                        "<|im_end|>\n{% endfor %}")
    return hf
