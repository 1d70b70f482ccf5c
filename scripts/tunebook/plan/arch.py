"""The model's shape as the planner needs it: ``meta.model``'s numbers, the linear layers of one
decoder block by PEFT target name, and the LoRA parameters a target list adds.

Family knowledge (fused projections, norms per layer, q/k/v biases) comes from
``tunebook.families``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tunebook import families
from tunebook.errors import UserError, did_you_mean


@dataclass(frozen=True)
class Arch:
    """The numbers of ``meta.model`` the planner needs (``tunebook.schema.ModelInfo``)."""

    family: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    params_b: float

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Arch:
        m = (config.get("meta") or {}).get("model")
        if not isinstance(m, dict):
            raise UserError("meta.model is missing from the recipe; the planner needs it")
        try:
            return cls(
                family=str(m["family"]), layers=int(m["layers"]), hidden=int(m["hidden_size"]),
                heads=int(m["heads"]), kv_heads=int(m["kv_heads"]),
                head_dim=int(m.get("head_dim") or int(m["hidden_size"]) // int(m["heads"])),
                intermediate=int(m["intermediate_size"]), vocab=int(m["vocab_size"]),
                tied=bool(m["tie_embeddings"]), params_b=float(m["params_b"]),
            )
        except KeyError as e:
            raise UserError(f"meta.model.{e.args[0]} is missing; the planner needs the "
                            "architecture numbers of recipes/model/*.yaml") from None

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def modules(self) -> dict[str, tuple[int, int]]:
        """(d_in, d_out) of every linear layer in one decoder block, by its PEFT target name.

        Phi-3 fuses q/k/v into ``qkv_proj`` and gate/up into ``gate_up_proj``; the others keep
        separate projections with grouped-query k/v of ``kv_heads * head_dim`` outputs."""
        h, ff = self.hidden, self.intermediate
        if families.get(self.family).fused_projections:
            return {"qkv_proj": (h, self.q_dim + 2 * self.kv_dim), "o_proj": (self.q_dim, h),
                    "gate_up_proj": (h, 2 * ff), "down_proj": (ff, h)}
        return {"q_proj": (h, self.q_dim), "k_proj": (h, self.kv_dim), "v_proj": (h, self.kv_dim),
                "o_proj": (self.q_dim, h), "gate_proj": (h, ff), "up_proj": (h, ff),
                "down_proj": (ff, h)}

    @property
    def norms_per_layer(self) -> int:
        return families.get(self.family).norms_per_layer

    @property
    def layer_linear_params(self) -> int:
        return sum(i * o for i, o in self.modules().values())

    @property
    def layer_other_params(self) -> int:
        bias = self.q_dim + 2 * self.kv_dim if families.get(self.family).qkv_bias else 0
        return self.norms_per_layer * self.hidden + bias

    @property
    def linear_params(self) -> int:
        return self.layers * self.layer_linear_params

    @property
    def embedding_params(self) -> int:
        """Input embedding plus LM head (one matrix when tied): never quantised by bnb."""
        return self.vocab * self.hidden * (1 if self.tied else 2)

    @property
    def other_params(self) -> int:
        return self.layers * self.layer_other_params + self.hidden  # + final norm

    @property
    def total_params(self) -> int:
        return self.linear_params + self.embedding_params + self.other_params

    @property
    def matmul_params(self) -> int:
        """Parameters that take part in a matmul per token: linears + LM head (not the lookup)."""
        return self.linear_params + self.vocab * self.hidden


def lora_params(arch: Arch, targets: Iterable[str], r: int) -> dict[str, int]:
    """Trainable LoRA parameters per target module (all layers): r * (d_in + d_out) each."""
    mods = arch.modules()
    out: dict[str, int] = {}
    for t in targets:
        if t in mods:
            d_in, d_out = mods[t]
            out[t] = arch.layers * r * (d_in + d_out)
        elif t == "lm_head":
            out[t] = r * (arch.hidden + arch.vocab)
        elif t == "embed_tokens":
            out[t] = r * (arch.vocab + arch.hidden)
        else:
            known = [*mods, "lm_head", "embed_tokens"]
            raise UserError(
                f"axolotl.lora_target_modules: {t!r} is not a linear layer of a {arch.family} "
                f"model{did_you_mean(t, known)}; its modules are {', '.join(known)}"
            )
    return out

