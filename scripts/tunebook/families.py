"""Model families: everything tunebook knows about an architecture class, in one place.

A recipe's base model (``recipes/model/<name>.yaml``) names its ``meta.model.family``; every
module that needs to know something about that architecture reads it here:

- the schema accepts exactly these families (``tunebook.schema``);
- the planner counts parameters and activations with their layout: fused projections, norms per
  layer, q/k/v biases, logit soft-capping (``tunebook.plan``);
- validation checks the FSDP wrap unit against the decoder layer class (``tunebook.validate``);
- ``profile/cpu-smoke`` picks the attention a CPU runs faithfully (``tunebook.compose``);
- the tiny twins are built with the family's model class, special tokens, chat template and a
  scaled-down configuration of the same shape (``tunebook.twins``).

Adding a family of an architecture class transformers already has is one entry here, a chat
template in ``data-templates/chat-templates/<name>.jinja`` and a model YAML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunebook import paths
from tunebook.errors import UserError, did_you_mean

TEMPLATES = paths.DATA_TEMPLATES / "chat-templates"


@dataclass(frozen=True)
class Family:
    name: str
    model_type: str  # transformers' config.model_type
    architecture: str  # the *ForCausalLM class
    decoder_layer: str  # the model class's own _no_split_modules: FSDP's wrap unit
    # -- layout the planner counts
    fused_projections: bool = False  # q/k/v in one qkv_proj, gate/up in one gate_up_proj
    norms_per_layer: int = 2
    qkv_bias: bool = False
    final_logit_softcapping: bool = False  # tanh over the logits: its output is kept for backward
    # -- attention: SDPA ignores attn_logit_softcapping, so a family that has it runs eager on CPU
    attn_logit_softcapping: bool = False
    # -- the tiny twin: special tokens (in id order, they take the first ids), the token that
    # closes an assistant turn, padding, and a tiny configuration of the same shape. Every
    # projection's output width is a multiple of 32: bitsandbytes' CPU 4-bit kernel (QLoRA
    # recipes) packs weights in blocks of 32 rows ("N must be divisible by block_n").
    bos: str | None = None
    eos: str = ""
    pad: str = ""
    specials: tuple[str, ...] = ()
    twin_config: dict[str, Any] = field(default_factory=dict)

    @property
    def cpu_attention(self) -> str:
        """The attention implementation that computes this family faithfully on a CPU."""
        return "eager" if self.attn_logit_softcapping else "sdpa"

    @property
    def chat_template(self) -> Path:
        return TEMPLATES / f"{self.name}.jinja"


# KV-head ratios, activations, tied embeddings and RoPE settings follow the real models
# (Llama/Mistral 4:1, Qwen2.5 6:1, Gemma 2 2:1, Phi-3.5 full multi-head).
FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family(
        "llama", "llama", "LlamaForCausalLM", "LlamaDecoderLayer",
        bos="<|begin_of_text|>", eos="<|eot_id|>", pad="<|finetune_right_pad_id|>",
        specials=("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                  "<|end_header_id|>", "<|eot_id|>", "<|finetune_right_pad_id|>"),
        twin_config={"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "num_key_value_heads": 1, "hidden_act": "silu",
                     "max_position_embeddings": 131072, "rms_norm_eps": 1e-5,
                     "tie_word_embeddings": False,
                     "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0,
                                         "factor": 8.0, "low_freq_factor": 1.0,
                                         "high_freq_factor": 4.0,
                                         "original_max_position_embeddings": 8192}}),
    Family(
        "mistral", "mistral", "MistralForCausalLM", "MistralDecoderLayer",
        bos="<s>", eos="</s>", pad="<unk>", specials=("<unk>", "<s>", "</s>"),
        twin_config={"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "num_key_value_heads": 1, "hidden_act": "silu",
                     "max_position_embeddings": 32768, "rms_norm_eps": 1e-5,
                     "tie_word_embeddings": False, "sliding_window": None,  # v0.2 has none
                     "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}}),
    Family(
        "qwen2", "qwen2", "Qwen2ForCausalLM", "Qwen2DecoderLayer", qkv_bias=True,
        bos=None, eos="<|im_end|>", pad="<|endoftext|>",
        # <|endoftext|> must be in the vocabulary: Qwen2's tokenizer class adds it otherwise and
        # Axolotl then resizes the embeddings into the adapter.
        specials=("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
        twin_config={"hidden_size": 192, "intermediate_size": 256, "num_hidden_layers": 2,
                     "num_attention_heads": 6, "num_key_value_heads": 1, "hidden_act": "silu",
                     "max_position_embeddings": 32768, "rms_norm_eps": 1e-6,
                     "tie_word_embeddings": True, "use_sliding_window": False,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}}),
    Family(
        "gemma2", "gemma2", "Gemma2ForCausalLM", "Gemma2DecoderLayer",
        norms_per_layer=4,  # pre/post-attention and pre/post-feedforward norms
        final_logit_softcapping=True, attn_logit_softcapping=True,
        bos="<bos>", eos="<end_of_turn>", pad="<pad>",
        specials=("<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"),
        twin_config={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "num_key_value_heads": 2,
                     "head_dim": 32,  # not hidden/heads, as in Gemma 2 9B (256 vs 224)
                     "query_pre_attn_scalar": 32, "hidden_activation": "gelu_pytorch_tanh",
                     "max_position_embeddings": 8192, "rms_norm_eps": 1e-6,
                     "tie_word_embeddings": True, "attn_logit_softcapping": 50.0,
                     "final_logit_softcapping": 30.0, "sliding_window": 128,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}}),
    Family(
        "phi3", "phi3", "Phi3ForCausalLM", "Phi3DecoderLayer", fused_projections=True,
        bos="<s>", eos="<|end|>", pad="<|endoftext|>",
        specials=("<unk>", "<s>", "</s>", "<|endoftext|>", "<|system|>", "<|user|>",
                  "<|assistant|>", "<|end|>"),
        twin_config={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "num_key_value_heads": 4,  # full multi-head
                     "hidden_act": "silu", "max_position_embeddings": 131072,
                     "original_max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
                     "tie_word_embeddings": False, "sliding_window": 262144,
                     # LongRoPE as in Phi-3.5: one short and one long factor per frequency
                     "rope_parameters": {"rope_type": "longrope", "rope_theta": 10000.0,
                                         "short_factor": [1.0, 1.02, 1.05, 1.1, 1.2, 1.4, 1.8,
                                                          2.5],
                                         "long_factor": [1.0, 1.1, 1.3, 1.8, 3.0, 6.0, 12.0,
                                                         24.0],
                                         "original_max_position_embeddings": 4096}}),
)}


def names() -> list[str]:
    return sorted(FAMILIES)


def get(name: str) -> Family:
    """The family ``name``, or a ``UserError`` naming the known ones."""
    family = FAMILIES.get(str(name))
    if family is None:
        raise UserError(f"unknown model family {name!r}{did_you_mean(str(name), FAMILIES)}; "
                        f"families: {', '.join(names())} (tunebook/families.py)")
    return family
