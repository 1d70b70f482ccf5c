"""Token counting for the time/cost plan: per row, with the recipe's tokenizer, cached."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from tunebook import paths
from tunebook.compose import compose_recipe
from tunebook.errors import UserError
from tunebook.plan import tokens as plan
from tunebook.plan.estimate import estimate

WORDS = ["hello", "my", "order", "is", "late", "please", "help", "we", "are", "sorry", "it",
         "ships", "today", "thanks", "yes", "no"]


def word_tokenizer(template: str | None = None) -> PreTrainedTokenizerFast:
    """One token per whitespace-separated word: counts are easy to do by hand."""
    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")
    fast.name_or_path = "word-tokenizer"
    if template:
        fast.chat_template = template
    return fast


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


CHAT = [
    {"messages": [{"role": "user", "content": "hello my order is late"},  # 5 words
                  {"role": "assistant", "content": "we are sorry it ships today"}]},  # 6 words
    {"messages": [{"role": "user", "content": "please help"},  # 2
                  {"role": "assistant", "content": "yes"}]},  # 1
]


def test_chat_rows_without_a_template(tmp_path):
    f = write(tmp_path / "train.jsonl", CHAT)
    # no chat template: contents + 2 tokens of role framing per message
    # row 1: 5 + 6 + 2 x 2 = 15; row 2: 2 + 1 + 2 x 2 = 7
    assert plan.count_tokens(f, word_tokenizer(), seq_len=4096) == 15 + 7
    # each conversation is capped at sequence_len (Axolotl drops or truncates the rest)
    assert plan.count_tokens(f, word_tokenizer(), seq_len=10) == 10 + 7


def test_chat_template_is_applied(tmp_path):
    f = write(tmp_path / "train.jsonl", CHAT)
    tmpl = "{% for m in messages %}{{ m['content'] }} thanks {% endfor %}"  # +1 word per turn
    expected = (5 + 1 + 6 + 1) + (2 + 1 + 1 + 1)
    assert plan.count_tokens(f, word_tokenizer(tmpl), seq_len=4096) == expected


def test_preference_rows_count_chosen_and_rejected(tmp_path):
    row = {"prompt": [{"role": "user", "content": "my order is late"}],  # 4
           "chosen": {"role": "assistant", "content": "sorry it ships today"},  # 4
           "rejected": {"role": "assistant", "content": "no"}}  # 1
    f = write(tmp_path / "pref.jsonl", [row])
    # two conversations, each prompt + answer + 2 framing tokens per message:
    # (4 + 4 + 4) + (4 + 1 + 4) = 21
    assert plan.count_tokens(f, word_tokenizer(), seq_len=4096) == 21


def test_bad_json_names_the_line(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text(json.dumps(CHAT[0]) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"bad.jsonl:2: not JSON"):
        plan.count_tokens(f, word_tokenizer(), 4096)


def test_cache_is_keyed_by_content_and_tokenizer(tmp_path):
    f = write(tmp_path / "train.jsonl", CHAT)
    cache = tmp_path / "cache"
    assert plan.cached_token_count(f, word_tokenizer(), 4096, cache) == (22, False)
    assert plan.cached_token_count(f, word_tokenizer(), 4096, cache) == (22, True)
    assert len(list(cache.glob("tokens-*.json"))) == 1
    # an edited file (same path) is counted again, never served stale
    write(f, CHAT[:1])
    assert plan.cached_token_count(f, word_tokenizer(), 4096, cache) == (15, False)
    # another tokenizer (here: a chat template) gets its own entry
    tmpl = "{% for m in messages %}{{ m['content'] }} {% endfor %}"
    assert plan.cached_token_count(f, word_tokenizer(tmpl), 4096, cache) == (11, False)
    assert len(list(cache.glob("tokens-*.json"))) == 3


def test_recipe_tokens_drive_time_and_cost(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "CACHE", tmp_path / "cache")
    cfg = compose_recipe("mistral7b-qlora-support").config
    cfg["data"]["train"] = str(write(tmp_path / "train.jsonl", CHAT * 50))
    n, source = plan.count_recipe_tokens(cfg, word_tokenizer())
    assert n == 22 * 50 and "train.jsonl" in source
    p = estimate(cfg, "rtx4090-24g", tokens=n)
    # 2 epochs x 1100 tokens x FLOPs/token / (165 TFLOP/s x 0.25) at $0.40/h
    assert p.time.hours == pytest.approx(2 * 1100 * p.time.flops_per_token / (165e12 * 0.25)
                                         / 3600)
    assert p.time.cost_usd == pytest.approx(p.time.hours * 0.40)
    cfg["data"]["train"] = str(tmp_path / "missing.jsonl")
    assert plan.count_recipe_tokens(cfg, word_tokenizer()) == (
        None, f"{tmp_path / 'missing.jsonl'} does not exist yet")


def test_the_recipe_tokenizer_comes_from_twins(tmp_path, monkeypatch):
    """Without an explicit tokenizer the planner asks tunebook.twins.tokenizer_for(config)."""
    from tunebook import twins

    seen = []
    monkeypatch.setattr(paths, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(twins, "tokenizer_for", lambda c: seen.append(c) or word_tokenizer())
    cfg = compose_recipe("mistral7b-qlora-support").config
    cfg["data"]["train"] = str(write(tmp_path / "train.jsonl", CHAT))
    assert plan.count_recipe_tokens(cfg)[0] == 22
    assert seen == [cfg]
