"""Tiny architecture twins: deterministic, offline, of the same class as each family's base."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from tunebook import compose, families, twins


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(tmp_path):
    a = twins.build_twin("llama", tmp_path / "a")
    b = twins.build_twin("llama", tmp_path / "b")
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert _sha(a / name) == _sha(b / name), name
    c = twins.build_twin("llama", tmp_path / "c", seed=7)
    assert _sha(c / "model.safetensors") != _sha(a / "model.safetensors")
    assert _sha(c / "tokenizer.json") == _sha(a / "tokenizer.json")  # the corpus decides it


EXPECTED = {  # family: (class, heads, kv heads, tied embeddings)
    "llama": ("LlamaForCausalLM", 4, 1, False),
    "mistral": ("MistralForCausalLM", 4, 1, False),
    "qwen2": ("Qwen2ForCausalLM", 6, 1, True),
    "gemma2": ("Gemma2ForCausalLM", 4, 2, True),
    "phi3": ("Phi3ForCausalLM", 4, 4, False),
}


@pytest.mark.parametrize("family", sorted(EXPECTED))
def test_twin_is_the_family_class_and_loads_with_auto_classes(family):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cls, heads, kv, tied = EXPECTED[family]
    path = twins.twin_dir(family)
    assert path.parent.name == "twins" and path.name.startswith(f"{family}-")
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    cfg = model.config
    assert type(model).__name__ == cls
    assert (cfg.num_attention_heads, cfg.num_key_value_heads) == (heads, kv)
    assert cfg.tie_word_embeddings is tied
    # Qwen2 pitfall: no token may be added on load, or Axolotl grows the embeddings
    assert len(tok) == cfg.vocab_size
    assert tok.eos_token_id == cfg.eos_token_id
    if family == "gemma2":
        assert cfg.attn_logit_softcapping == 50.0 and cfg.final_logit_softcapping == 30.0
        assert cfg.sliding_window == 128 and cfg.head_dim * heads != cfg.hidden_size
    if family == "phi3":
        names = {n for n, _ in model.named_modules()}
        assert any(n.endswith("qkv_proj") for n in names)
        assert any(n.endswith("gate_up_proj") for n in names)
        assert cfg.rope_parameters["rope_type"] == "longrope"
    if family == "llama":
        assert cfg.rope_parameters["rope_type"] == "llama3"
    if family == "qwen2":
        assert model.model.layers[0].self_attn.q_proj.bias is not None  # Qwen's q/k/v biases


@pytest.mark.parametrize("family", sorted(EXPECTED))
def test_chat_template_is_the_shipped_file_and_takes_a_system_message(family):
    tok = twins.load_tokenizer(twins.twin_dir(family))
    assert tok.chat_template == twins.template_path(family).read_text(encoding="utf-8")
    text = tok.apply_chat_template(
        [{"role": "system", "content": "SYSTEM-PROMPT"}, {"role": "user", "content": "USER-TEXT"},
         {"role": "assistant", "content": "REPLY"}], tokenize=False)
    assert text.index("SYSTEM-PROMPT") < text.index("USER-TEXT") < text.index("REPLY")
    assert tok.eos_token in text[text.index("REPLY"):]  # the turn end Axolotl trains on
    if family == "mistral":  # folded into the first user turn
        assert "[INST] SYSTEM-PROMPT\n\nUSER-TEXT [/INST]" in text
    if family == "gemma2":
        assert "<start_of_turn>user\nSYSTEM-PROMPT\n\nUSER-TEXT<end_of_turn>" in text


def test_twin_path_hash_covers_template_and_corpus(tmp_path, monkeypatch):
    before = twins.twin_path("mistral")
    assert before == twins.twin_path("mistral")  # stable
    templates = tmp_path / "chat-templates"
    shutil.copytree(families.TEMPLATES, templates)
    monkeypatch.setattr(families, "TEMPLATES", templates)
    assert twins.twin_path("mistral") == before
    (templates / "mistral.jinja").write_text("{{ bos_token }}changed", encoding="utf-8")
    assert twins.twin_path("mistral") != before
    monkeypatch.undo()
    extra = tmp_path / "more.jsonl"
    extra.write_text('{"messages": []}\n', encoding="utf-8")
    files = twins.corpus_files()
    monkeypatch.setattr(twins, "corpus_files", lambda: [*files, extra])
    assert twins.twin_path("mistral") != before


def test_tokenizer_for_a_hub_model_not_cached_is_its_twins():
    config = compose.compose_recipe("mistral7b-qlora-support").config
    tok = twins.tokenizer_for(config)
    assert tok.chat_template == twins.template_path("mistral").read_text(encoding="utf-8")
    assert len(tok) == twins.VOCAB_SIZE


def test_the_default_recipe_base_is_the_pretrained_tiny_llama():
    config = compose.compose_recipe("tiny-lora-triage").config
    base = twins.ensure_base(config)
    meta = (Path(base) / "tunebook-twin.json").read_text(encoding="utf-8")
    assert '"pretrain"' in meta and '"family": "llama"' in meta
    tok = twins.tokenizer_for(config)
    assert "<|start_header_id|>" in tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False)


@pytest.mark.parametrize("family", [*sorted(EXPECTED), "tiny-base"])
def test_the_gates_tokenizer_renders_and_counts_like_autotokenizer(family):
    """The data gate counts with ``ChatTokenizer`` (no torch import); on every shipped row and
    every twin its texts and token counts are AutoTokenizer's, with and without specials."""
    from tunebook.data import chat_tokenizer, formats, tokens
    from tunebook.paths import DATA_TEMPLATES

    directory = twins.tiny_base_dir() if family == "tiny-base" else twins.twin_dir(family)
    light, full = chat_tokenizer.load(directory), twins.load_tokenizer(directory)
    assert isinstance(light, chat_tokenizer.ChatTokenizer)
    assert light.chat_template == full.chat_template
    rows = [json.loads(line) for f in sorted(DATA_TEMPLATES.glob("datasets/*/val.jsonl"))
            for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
    conversations = [formats.messages(r) for r in rows]
    texts, merged = tokens.render_texts(light, conversations)
    assert (texts, merged) == tokens.render_texts(full, conversations) and len(texts) > 200
    for specials in (False, True):
        assert tokens.count(light, texts, specials) == tokens.count(full, texts, specials)
