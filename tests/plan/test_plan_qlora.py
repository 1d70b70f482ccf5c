"""The QLoRA-specific rows of the breakdown, the loss implementations and the dtype paths, each
against arithmetic written out by hand (Mistral 7B: hidden 4096, 32 heads / 8 KV heads of 128,
MLP 14336, vocabulary 32000; LoRA r 32 on all seven projections)."""

from __future__ import annotations

import pytest
from test_plan import GIB, LORA_R32, NF4, P_EMB, P_LIN, P_OTH, mistral, term

from tunebook import gpus
from tunebook.plan.activations import layer_activation_bytes, loss_bytes_per_token
from tunebook.plan.arch import Arch
from tunebook.plan.estimate import estimate
from tunebook.plan.settings import settings_from

PLAIN_PEFT = {"embedding_bytes": 4}  # prepare_model_for_kbit_training without Axolotl's cast back


def layer_bytes(cfg: dict, framework: dict | None = None) -> float:
    return layer_activation_bytes(Arch.from_config(cfg),
                                  settings_from(cfg, gpus.get("a100-80g"), framework=framework))


def test_axolotl_leaves_no_fp32_layers_plain_peft_does():
    axolotl = estimate(mistral(), "a100-80g", suggest=False)
    assert term(axolotl, "k-bit preparation: layers left in fp32") == 0
    detail = next(t.detail for t in axolotl.terms if t.name.startswith("k-bit"))
    assert "casts the first three back" in detail
    assert term(axolotl, "activations: checkpoints") == pytest.approx(
        2 * 4096 * 32 * 2048 / GIB)  # bf16 residual stream
    plain = estimate(mistral(), "a100-80g", framework=PLAIN_PEFT, suggest=False)
    # embeddings, LM head and norms at 4 B in the weights row ...
    assert term(plain, "weights") == pytest.approx((P_LIN * NF4 + (P_EMB + P_OTH) * 4) / GIB)
    # ... autocast's bf16 copy of the frozen fp32 LM head kept for its backward
    assert term(plain, "k-bit preparation: layers left in fp32") == pytest.approx(
        32000 * 4096 * 2 / GIB)
    # ... and an fp32 residual stream: 4 B checkpoints
    assert term(plain, "activations: checkpoints") == pytest.approx(4 * 4096 * 32 * 2048 / GIB)
    assert plain.peak_gb > axolotl.peak_gb


def test_layer_bytes_on_each_dtype_path():
    cfg = mistral(lora_dropout=0.0)
    # Axolotl (bf16 stream, autocast): 2 norms x fp32 input 4 x 4096 = 32_768; FlashAttention
    # q, k, v, out 2 x (2 x 4096 + 2 x 1024) = 20_480; MLP 3 x 2 x 14336 = 86_016; adapter
    # inputs shared: norm output 2 x 4096 for q/k/v and for gate/up, down's input 2 x 14336
    # (o's input is the attention output, saved already); lora_A outputs 7 x 2 x 32 = 448
    assert layer_bytes(cfg) == 32_768 + 20_480 + 86_016 + 8_192 + 8_192 + 28_672 + 448
    # plain PEFT: fp32 MLP 3 x 4 x 14336 = 172_032, and each adapter its own autocast copy of
    # an fp32 input: q, k, v, gate, up 5 x 2 x 4096, down 2 x 14336, o still shared
    assert layer_bytes(cfg, PLAIN_PEFT) == (32_768 + 20_480 + 172_032 + 40_960 + 28_672 + 448)
    # no autocast: PEFT casts every adapter's input to fp32 itself: q, k, v, gate, up
    # 5 x 4 x 4096, o 4 x 4096, down 4 x 14336, lora_A outputs in fp32 7 x 4 x 32
    assert layer_bytes(cfg, {"autocast": False}) == (32_768 + 20_480 + 86_016 + 81_920 + 16_384
                                                     + 57_344 + 896)


def test_autocast_copies_of_the_fp32_adapters():
    p = estimate(mistral(), "a100-80g", suggest=False)
    assert term(p, "LoRA adapters: autocast copies") == pytest.approx(LORA_R32 * 2 / GIB)
    for fw in ({"autocast": False}, {"adapter_bytes": 2}):
        names = [t.name for t in estimate(mistral(), "a100-80g", framework=fw,
                                          suggest=False).terms]
        assert "LoRA adapters: autocast copies" not in names, fw


@pytest.mark.parametrize(("axolotl", "framework", "per_token"), [
    ({}, None, 12 * 32000),  # transformers 5: 12 B per logit
    ({}, {"loss": "hf_shift"}, 14 * 32000),  # + a contiguous shifted fp32 copy (4.46-4.48)
    ({"chunked_cross_entropy": True}, None, 3.5 * 32000),
    # Liger at 2 x 1024 tokens: chunks of next_pow2(ceil(2048 / ceil(32000 / 4096))) = 256
    # rows of bf16 logits + the bf16 input gradient + an fp32 loss per token
    ({"liger_fused_linear_cross_entropy": True}, None, 2 * 4096 + 4 + 2 * 32000 * 256 / 2048),
    ({"cut_cross_entropy": True}, None, 2 * 4096 + 8),  # input gradient + fp32 LSE and loss
])
def test_loss_bytes_per_token(axolotl, framework, per_token):
    cfg = mistral(**axolotl)
    s = settings_from(cfg, gpus.get("a100-80g"), framework=framework)
    assert loss_bytes_per_token(Arch.from_config(cfg), s, 2048)[0] == pytest.approx(per_token)


def test_fused_cross_entropy_moves_the_peak_to_the_recomputed_layer():
    hf = estimate(mistral(sequence_len=4096), "a100-80g", suggest=False)
    liger = estimate(mistral(sequence_len=4096, liger_fused_linear_cross_entropy=True),
                     "a100-80g", suggest=False)
    assert any(t.name == "activations: peak transient (logits & loss)" for t in hf.terms)
    assert any(t.name == "activations: peak transient (one layer)" for t in liger.terms)
    # the recomputed layer now peaks with its dequantised weight alive
    assert term(liger, "bitsandbytes: dequantised weight") == pytest.approx(
        (4096 * 14336 * 2 + 4096 * 14336 / 64 * 4) / GIB)
    assert term(hf, "bitsandbytes: dequantised weight") == 0  # below the logits peak
    assert liger.peak_gb < hf.peak_gb
    assert any("Liger fused linear cross-entropy" in a for a in liger.assumptions)


def test_unknown_loss_model_is_a_user_error():
    from tunebook.errors import UserError

    with pytest.raises(UserError, match="unknown loss model 'fused'; one of hf, hf_shift"):
        estimate(mistral(), "a100-80g", framework={"loss": "fused"}, suggest=False)
