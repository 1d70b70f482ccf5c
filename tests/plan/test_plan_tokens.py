"""Token lengths for the time/cost plan: the data gate's counter, per sequence, cached; and the
same counts as the data gate on the shipped chat datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from tunebook import paths
from tunebook.compose import compose_recipe
from tunebook.errors import UserError
from tunebook.plan import tokens
from tunebook.plan.estimate import estimate

WORDS = ["hello", "my", "order", "is", "late", "please", "help", "we", "are", "sorry", "it",
         "ships", "today", "thanks", "yes", "no"]


def word_tokenizer(template: str | None = None) -> PreTrainedTokenizerFast:
    """One token per whitespace-separated word, no special tokens: counts are easy by hand."""
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
    # no chat template: the turns joined with newlines, the tokenizer's own special tokens
    # (none here): 5 + 6 and 2 + 1; lengths are whole (the length filter is batching's job)
    assert tokens.sequence_lengths(f, word_tokenizer()) == [11, 3]


def test_chat_template_is_applied(tmp_path):
    f = write(tmp_path / "train.jsonl", CHAT)
    tmpl = "{% for m in messages %}{{ m['content'] }} thanks {% endfor %}"  # +1 word per turn
    assert tokens.sequence_lengths(f, word_tokenizer(tmpl)) == [5 + 1 + 6 + 1, 2 + 1 + 1 + 1]


def test_preference_rows_count_chosen_and_rejected(tmp_path):
    row = {"prompt": [{"role": "user", "content": "my order is late"}],  # 4
           "chosen": {"role": "assistant", "content": "sorry it ships today"},  # 4
           "rejected": {"role": "assistant", "content": "no"}}  # 1
    f = write(tmp_path / "pref.jsonl", [row])
    # two sequences: prompt + chosen, prompt + rejected
    assert tokens.sequence_lengths(f, word_tokenizer()) == [4 + 4, 4 + 1]


def test_bad_rows_name_the_file(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text(json.dumps(CHAT[0]) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"bad.jsonl:2: not JSON"):
        tokens.sequence_lengths(f, word_tokenizer())
    write(f, [CHAT[0], {"question": "?"}])
    with pytest.raises(UserError, match=r"bad.jsonl: row 2 is none of the chat"):
        tokens.sequence_lengths(f, word_tokenizer())


def test_cache_is_keyed_by_content_and_tokenizer(tmp_path):
    f = write(tmp_path / "train.jsonl", CHAT)
    cache = tmp_path / "cache"
    assert tokens.cached_sequence_lengths(f, word_tokenizer(), cache) == ([11, 3], False)
    assert tokens.cached_sequence_lengths(f, word_tokenizer(), cache) == ([11, 3], True)
    assert len(list(cache.glob("lengths-*.json"))) == 1
    # an edited file (same path) is counted again, never served stale
    write(f, CHAT[:1])
    assert tokens.cached_sequence_lengths(f, word_tokenizer(), cache) == ([11], False)
    # another tokenizer (here: a chat template) gets its own entry
    tmpl = "{% for m in messages %}{{ m['content'] }} {% endfor %}"
    assert tokens.cached_sequence_lengths(f, word_tokenizer(tmpl), cache) == ([11], False)
    assert len(list(cache.glob("lengths-*.json"))) == 3
    # a damaged entry is counted again
    for entry in cache.glob("lengths-*.json"):
        entry.write_text("{}")
    assert tokens.cached_sequence_lengths(f, word_tokenizer(), cache) == ([11], False)


def test_recipe_lengths_drive_time_and_cost(tmp_path, monkeypatch):
    from tunebook import twins

    monkeypatch.setattr(paths, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(twins, "tokenizer_for", lambda c, full=True: word_tokenizer())
    cfg = compose_recipe("mistral7b-qlora-support").config
    train = write(tmp_path / "train.jsonl", CHAT * 50)
    cfg["data"]["train"] = cfg["data"]["val"] = str(train)
    ax = cfg["axolotl"]
    for key in ("sample_packing", "eval_sample_packing", "pad_to_sequence_len"):
        ax.pop(key, None)  # the recipe packs; this part counts the unpacked case
    ax.update(micro_batch_size=2, gradient_accumulation_steps=8, num_epochs=2, evals_per_epoch=1,
              sequence_len=1024)
    ax.pop("eval_steps", None)
    p = estimate(cfg, "rtx4090-24g", count=True)
    t = p.time
    # unpacked: 100 sequences of 11 and 3 tokens, each micro-batch padded to a multiple of 64:
    # 100 x 64 = 6,400 processed for 50 x 14 = 700 useful tokens per epoch
    assert t.tokens_per_epoch == 700 and t.processed_tokens_per_epoch == pytest.approx(6400)
    assert t.packing_efficiency == pytest.approx(700 / 6400)
    # 50 micro-batches / accumulation 8 -> 7 steps an epoch, 14 in 2 epochs, 6400 / 7 each
    assert t.steps_per_epoch == 7 and t.total_steps == 14
    # 2 evaluations (1 per epoch) x 6,400 processed val tokens x 2N; N = linears + LM head
    n = 32 * 218_103_808 + 32000 * 4096
    assert t.eval_flops == pytest.approx(2 * 6400 * 2 * n)
    # hours = (FLOPs/token x 14 steps x 6400/7 tokens + eval) / (165 TFLOP/s x MFU 0.25)
    expected = (t.flops_per_token * 14 * 6400 / 7 + 2 * 6400 * 2 * n) / (165e12 * 0.25) / 3600
    assert t.hours == pytest.approx(expected)
    assert t.cost_usd == pytest.approx(t.hours * 0.40)
    # packing the same rows: 100 rows fit one 2 x 1024 bin? 700 tokens do: one micro-batch
    ax["sample_packing"] = True
    ax["attn_implementation"] = "flash_attention_2"  # one 2 x 1024 row a micro-batch (varlen)
    packed = estimate(cfg, "rtx4090-24g", count=True).time
    assert packed.processed_tokens_per_epoch == 1024 and packed.steps_per_epoch == 1
    assert packed.hours < t.hours
    cfg["data"]["train"] = str(tmp_path / "missing.jsonl")
    assert tokens.recipe_lengths(cfg, word_tokenizer()) == (
        None, f"{tmp_path / 'missing.jsonl'} does not exist yet")


def test_the_recipe_tokenizer_is_the_data_gates(tmp_path, monkeypatch):
    """Without an explicit tokenizer the planner asks tunebook.twins.tokenizer_for(config,
    full=False): the torch-free tokenizer the data gate counts with."""
    from tunebook import twins

    seen = []
    monkeypatch.setattr(paths, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(twins, "tokenizer_for",
                        lambda c, full=True: seen.append((c, full)) or word_tokenizer())
    cfg = compose_recipe("mistral7b-qlora-support").config
    cfg["data"]["train"] = str(write(tmp_path / "train.jsonl", CHAT))
    assert tokens.recipe_lengths(cfg)[0] == [11, 3]
    assert seen == [(cfg, False)]


CHAT_RECIPES = ["mistral7b-qlora-support", "llama8b-qlora-clauses", "qwen7b-qlora-triage",
                "gemma9b-qlora-support", "phi3.5mini-qlora-triage"]


@pytest.mark.parametrize("recipe", CHAT_RECIPES)
def test_planner_counts_equal_the_data_gate_on_shipped_data(recipe):
    """One counter: the data gate's per-row counts and the planner's per-sequence counts are
    identical on the shipped chat datasets, with each family's tokenizer (Gemma's template
    rejects a system turn: both merge it the same way)."""
    from tunebook.data import checks
    from tunebook.twins import tokenizer_for

    cfg = compose_recipe(recipe).config
    tok = tokenizer_for(cfg, full=False)
    for split in ("train", "val", "test"):
        path = paths.ROOT / cfg["data"][split]
        rows = tokens.read_rows(path)
        by_gate, _ = checks.token_lengths(tok, rows, int(cfg["axolotl"]["sequence_len"]))
        planner = tokens.sequence_lengths(path, tok)
        assert len(planner) == len(rows) > 0
        assert [by_gate[i] for i in range(len(rows))] == planner, (recipe, split)
