"""What a bitsandbytes-quantised base adds to the memory plan, read from the installed sources
(bitsandbytes 0.50, PEFT 0.20, Axolotl 0.19):

- **NF4 / LLM.int8 storage**: 4-bit codes with one absmax per 64 weights (8-bit, itself
  quantised in blocks of 256 with an fp32 absmax, when double quantisation is on; fp32 without
  it); LLM.int8 keeps one byte per weight and an fp32 scale per row.
- **The dequantised weight**: ``bitsandbytes.autograd.MatMul4Bit`` dequantises the whole weight
  to the compute dtype for every matmul of more than 1,536 rows (``_dequant_linear_fallback``:
  an fp32 copy of the double-quantised absmax, then ``B_dq`` in the input's dtype, then
  ``F.linear``), and its backward dequantises it again for the input gradient. One weight at a
  time: the largest linear of a layer sets the size. It lives inside a layer's recompute and
  backward, never at the logits' peak (the LM head is not quantised).
- **PEFT's k-bit preparation**: ``prepare_model_for_kbit_training`` casts every non-quantised
  parameter (embeddings, LM head, norms, biases) to fp32. Axolotl casts the norms, embeddings and
  LM head back to the compute dtype (``loaders/model.py``, ``_convert_embedding_modules_dtype``)
  and ``Linear4bit.forward`` casts a bias to the compute dtype on first use, so in an Axolotl run
  nothing stays in fp32. Plain PEFT leaves them fp32: the weights count 4 B for them, the
  residual stream becomes fp32 (``Settings.fp32_layers``), and autocast keeps a 16-bit copy of
  the frozen fp32 LM head from its forward to its backward.
- **Workspaces**: the 4-bit matmul allocates only its output; LLM.int8's forward quantises its
  input to int8 and accumulates in int32 before dequantising. Paged optimisers
  (``paged_adamw_*``) live in CUDA unified memory that can spill to the CPU: the plan counts them
  on the GPU.
"""

from __future__ import annotations

from tunebook.plan.arch import Arch
from tunebook.plan.settings import Settings
from tunebook.plan.units import gb

NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)  # 4-bit codes + 8-bit absmax per 64 + fp32 per 256 blocks
NF4_BYTES_NO_DQ = 0.5 + 4 / 64  # fp32 absmax per 64-weight block
INT8_BYTES = 1.0  # LLM.int8 weights; the per-row fp32 scales are negligible
BLOCK = 64  # NF4 weights per absmax


def dequant_bytes(arch: Arch, s: Settings, tokens: int) -> float:
    """Bytes of the dequantised weight (and its temporaries) alive inside one layer's matmuls."""
    if not (s.adapter and s.quant_bits in (4, 8)):
        return 0.0
    mods = arch.modules().values()
    largest = max(i * o for i, o in mods)
    if s.quant_bits == 4:
        # B_dq in the compute dtype + the fp32 absmax rebuilt from its 8-bit copy
        return largest * s.dtype_bytes + largest / BLOCK * 4
    # LLM.int8: the backward's dequantised weight; the forward's int8 input and int32 output
    return largest * s.dtype_bytes + tokens * max(i + 4 * o for i, o in mods)


def dequant_how(arch: Arch, s: Settings, nbytes: float, alive: bool) -> str:
    i, o = max(arch.modules().values(), key=lambda io: io[0] * io[1])
    what = (f"the largest linear ({i} x {o}) dequantised to {s.dtype_name} for each matmul "
            f"and again for its input gradient, one at a time: {gb(nbytes):.2f} GiB")
    if s.quant_bits == 8:
        what += " with LLM.int8's int8 input and int32 accumulator"
    if alive:
        return what + "; alive inside the recomputed layer, which is the peak here"
    return what + "; alive only inside a layer's recompute/backward, below the logits peak: 0"


def kbit_preparation(arch: Arch, s: Settings) -> tuple[float, str]:
    """Bytes PEFT's k-bit preparation adds beyond the weights row, and why."""
    if s.fp32_layers:
        head = arch.vocab * arch.hidden * s.dtype_bytes
        return head, (f"plain PEFT leaves embeddings, LM head and norms in fp32 (counted at 4 B "
                      f"in weights; fp32 residual checkpoints and layer activations) + autocast's "
                      f"{s.dtype_name} copy of the frozen fp32 LM head, kept for its backward "
                      f"({gb(head):.2f} GiB)")
    return 0.0, ("prepare_model_for_kbit_training upcasts embeddings, LM head, norms and biases "
                 "to fp32; Axolotl casts the first three back to "
                 f"{s.dtype_name} and bitsandbytes casts a bias on first use: nothing stays fp32")
