"""The planner's memory, FLOP and time terms against values computed by hand.

Every expected number is written out as arithmetic on the architecture's own numbers (Mistral 7B:
32 layers, hidden 4096, 32 query heads / 8 KV heads of 128, MLP 14336, vocabulary 32000), never
by calling the function under test a second way.
"""

from __future__ import annotations

import copy

import pytest

from tunebook import gpus
from tunebook.compose import compose_recipe
from tunebook.errors import UserError
from tunebook.plan.activations import layer_activation_bytes
from tunebook.plan.arch import Arch, lora_params
from tunebook.plan.estimate import Plan, estimate, peak_gb
from tunebook.plan.settings import evaluations, settings_from
from tunebook.plan.throughput import flops_per_token

GIB = 2**30
ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

# Mistral 7B, hand-counted:
#   per layer: q 4096*4096 + k 4096*1024 + v 4096*1024 + o 4096*4096 + 3 * 4096*14336
#            = 16_777_216 + 4_194_304 + 4_194_304 + 16_777_216 + 176_160_768 = 218_103_808
P_LIN = 32 * 218_103_808  # 6_979_321_856
P_EMB = 2 * 32000 * 4096  # untied embedding + LM head = 262_144_000
P_OTH = 32 * 2 * 4096 + 4096  # two RMSNorms per layer + the final norm = 266_240
NF4 = 0.5 + 1 / 64 + 4 / (64 * 256)  # 4-bit codes + 8-bit absmax / 64 + fp32 / (64 * 256)
LORA_R32 = 32 * 32 * (8192 + 5120 + 5120 + 8192 + 18432 + 18432 + 18432)  # 83_886_080


def mistral(**axolotl) -> dict:
    model = {"family": "mistral", "params_b": 7.24, "layers": 32, "hidden_size": 4096,
             "heads": 32, "kv_heads": 8, "intermediate_size": 14336, "vocab_size": 32000,
             "tie_embeddings": False, "max_positions": 32768, "lora_target_modules": ALL}
    ax = {"adapter": "qlora", "load_in_4bit": True, "lora_r": 32, "lora_dropout": 0.05,
          "lora_target_modules": ALL, "optimizer": "paged_adamw_8bit", "micro_batch_size": 2,
          "sequence_len": 1024, "gradient_accumulation_steps": 8, "num_epochs": 2,
          "gradient_checkpointing": True, "bf16": "auto",
          "attn_implementation": "flash_attention_2"}
    kind = axolotl.pop("kind", "qlora")
    launcher = axolotl.pop("launcher", {"kind": "single", "gpus_per_node": 1, "nnodes": 1})
    ax.update(axolotl)
    return {"meta": {"model": model, "method": {"kind": kind}}, "axolotl": ax,
            "launcher": launcher, "data": {}}


def term(p: Plan, prefix: str) -> float:
    """The row named ``prefix`` exactly, or else the one row whose name starts with it."""
    matches = ([t.gb for t in p.terms if t.name == prefix]
               or [t.gb for t in p.terms if t.name.startswith(prefix)])
    assert len(matches) == 1, [t.name for t in p.terms]
    return matches[0]


def test_architecture_counts_match_the_published_sizes():
    arch = Arch.from_config(mistral())
    assert arch.linear_params == P_LIN == 6_979_321_856
    assert arch.embedding_params == P_EMB
    assert arch.total_params == P_LIN + P_EMB + P_OTH  # 7_241_732_096: "7.24B"
    # Every recipe's model file agrees with its params_b within 1%.
    for recipe in ("gemma9b-qlora-support", "llama8b-lora-support", "phi3.5mini-qlora-triage",
                   "qwen1.5b-full-triage", "qwen7b-lora-clauses", "mistral7b-qlora-support"):
        a = Arch.from_config(compose_recipe(recipe).config)
        assert abs(a.total_params / 1e9 - a.params_b) / a.params_b < 0.01, recipe


def test_module_shapes_gqa_fused_phi3_and_gemma_head_dim():
    m = Arch.from_config(mistral()).modules()
    assert m["k_proj"] == (4096, 8 * 128) and m["q_proj"] == (4096, 4096)  # GQA: 8 KV heads
    phi = Arch.from_config(compose_recipe("phi3.5mini-qlora-triage").config).modules()
    # Phi-3.5 mini: 32 heads x 96, full MHA: fused q|k|v = 3 * 3072; fused gate|up = 2 * 8192
    assert phi == {"qkv_proj": (3072, 9216), "o_proj": (3072, 3072),
                   "gate_up_proj": (3072, 16384), "down_proj": (8192, 3072)}
    gem = Arch.from_config(compose_recipe("gemma9b-qlora-support").config).modules()
    # Gemma 2 9B: head_dim 256 (not 3584 / 16 = 224): q 16 x 256 = 4096, k/v 8 x 256 = 2048
    assert gem["q_proj"] == (3584, 4096) and gem["k_proj"] == (3584, 2048)
    assert gem["o_proj"] == (4096, 3584)


def test_lora_parameters_from_rank_and_targets():
    arch = Arch.from_config(mistral())
    per = lora_params(arch, ALL, 32)
    assert per["k_proj"] == 32 * 32 * (4096 + 1024)
    assert sum(per.values()) == LORA_R32 == 83_886_080
    phi = Arch.from_config(compose_recipe("phi3.5mini-qlora-triage").config)
    # r 16 x (3072+9216 + 3072+3072 + 3072+16384 + 8192+3072) = 16 x 49152 per layer, x 32
    assert sum(lora_params(phi, ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
                                16).values()) == 32 * 16 * 49152
    with pytest.raises(UserError, match="did you mean 'q_proj'"):
        lora_params(arch, ["q_prj"], 8)


def test_qlora_weights_adapters_gradients_optimizer():
    p = estimate(mistral(), "rtx4090-24g", suggest=False)
    # NF4 linears + bf16 embeddings/LM head/norms (bnb never quantises them)
    assert term(p, "weights") == pytest.approx((P_LIN * NF4 + (P_EMB + P_OTH) * 2) / GIB)
    # 3_489_660_928 + 109_051_904 + 1_703_936 + 524_820_480 = 4_125_237_248 B = 3.842 GiB
    assert term(p, "weights") == pytest.approx(4_125_237_248 / GIB)
    assert round(4_125_237_248 / GIB, 3) == 3.842
    assert term(p, "LoRA adapters") == pytest.approx(LORA_R32 * 4 / GIB)  # fp32 adapters
    assert term(p, "gradients") == pytest.approx(LORA_R32 * 4 / GIB)
    assert term(p, "optimizer states") == pytest.approx(LORA_R32 * 2 / GIB)  # 8-bit: m + v
    assert p.trainable_params == LORA_R32
    # double quantisation off: fp32 absmax per 64-weight block = 0.5 + 4/64 B/param
    p2 = estimate(mistral(bnb_config_kwargs={"bnb_4bit_use_double_quant": False}),
                       "rtx4090-24g", suggest=False)
    assert term(p2, "weights") == pytest.approx((P_LIN * (0.5 + 4 / 64) + (P_EMB + P_OTH) * 2)
                                                / GIB)


def test_bf16_lora_8bit_and_optimizer_bytes():
    lora = estimate(mistral(kind="lora", load_in_4bit=False, optimizer="adamw_torch"),
                         "a100-40g", suggest=False)
    assert term(lora, "weights") == pytest.approx((P_LIN + P_EMB + P_OTH) * 2 / GIB)
    assert term(lora, "optimizer states") == pytest.approx(LORA_R32 * 8 / GIB)  # fp32 m + v
    int8 = estimate(mistral(kind="lora", load_in_4bit=False, load_in_8bit=True),
                         "a100-40g", suggest=False)
    assert term(int8, "weights") == pytest.approx((P_LIN * 1 + (P_EMB + P_OTH) * 2) / GIB)
    paged32 = estimate(mistral(optimizer="paged_adamw_32bit"), "a100-40g", suggest=False)
    assert term(paged32, "optimizer states") == pytest.approx(LORA_R32 * 8 / GIB)


def test_full_fine_tune_single_gpu_and_deepspeed_mixed_precision():
    total = P_LIN + P_EMB + P_OTH
    full = estimate(mistral(kind="full", optimizer="adamw_torch"), "a100-80g", suggest=False)
    # Axolotl trains bf16 weights in place: 2 (weights) + 2 (grads) + 2 x 2 (bf16 m, v)
    assert term(full, "weights") == pytest.approx(total * 2 / GIB)
    assert term(full, "gradients") == pytest.approx(total * 2 / GIB)
    assert term(full, "optimizer states") == pytest.approx(total * 4 / GIB)
    ds = estimate(mistral(kind="full", optimizer="adamw_torch",
                               launcher={"kind": "deepspeed", "gpus_per_node": 1,
                                         "zero_stage": 0}), "a100-80g", suggest=False)
    # DeepSpeed: fp32 master (4) + fp32 m, v (8) = 12 B: the 16 B/param of mixed precision
    state_terms = ("weights", "gradients", "optimizer states")
    assert sum(term(ds, t) for t in state_terms) == pytest.approx(16 * total / GIB)


def test_sharding_zero2_zero3_ddp_and_offload():
    total = P_LIN + P_EMB + P_OTH
    base = {"kind": "deepspeed", "gpus_per_node": 4}
    z2 = estimate(mistral(kind="full", optimizer="adamw_torch",
                               launcher={**base, "shards_optimizer": True}), "a100-80g",
                       suggest=False)
    assert z2.gpus == 4
    assert term(z2, "weights") == pytest.approx(total * 2 / GIB)  # replicated
    assert term(z2, "gradients") == pytest.approx(total * 2 / 4 / GIB)
    assert term(z2, "optimizer states") == pytest.approx(total * 12 / 4 / GIB)
    z3 = estimate(mistral(kind="full", optimizer="adamw_torch",
                               launcher={**base, "shards_optimizer": True,
                                         "shards_weights": True}), "a100-80g", suggest=False)
    assert term(z3, "weights") == pytest.approx(total * 2 / 4 / GIB)
    # two decoder layers gathered at a time: 2 x (218_103_808 linear + 2 x 4096 norm) x 2 B
    assert term(z3, "gathered layers") == pytest.approx(2 * (218_103_808 + 8192) * 2 / GIB)
    off = estimate(mistral(kind="full", optimizer="adamw_torch",
                                launcher={**base, "shards_optimizer": True,
                                          "shards_weights": True, "offload": True}),
                        "a100-80g", suggest=False)
    assert term(off, "optimizer states") == 0 and term(off, "weights") == 0
    # --gpus n on a replicated launcher: DDP keeps a flat copy of the gradients
    ddp = estimate(mistral(kind="full", optimizer="adamw_torch",
                                launcher={"kind": "ddp", "gpus_per_node": 1}), "a100-80g", 2,
                        suggest=False)
    assert ddp.gpus == 2 and term(ddp, "DDP gradient buckets") == pytest.approx(total * 2 / GIB)
    assert term(ddp, "optimizer states") == term(full_single := estimate(
        mistral(kind="full", optimizer="adamw_torch"), "a100-80g", suggest=False),
        "optimizer states")
    assert full_single.gpus == 1


def test_the_stage_deepspeed_runs_is_read_from_its_json(tmp_path):
    total = P_LIN + P_EMB + P_OTH
    zero1 = tmp_path / "zero1.json"
    zero1.write_text('{"zero_optimization": {"stage": 1}, "bf16": {"enabled": "auto"}}')
    # the flags a user copies from deepspeed-zero2.yaml say "optimizer sharded"; the file says 1
    z1 = estimate(mistral(kind="full", optimizer="adamw_torch", deepspeed=str(zero1),
                          launcher={"kind": "deepspeed", "gpus_per_node": 4,
                                    "shards_optimizer": True}), "a100-80g", suggest=False)
    assert term(z1, "gradients") == pytest.approx(total * 2 / GIB)  # ZeRO-1: not sharded
    assert term(z1, "optimizer states") == pytest.approx(total * 12 / 4 / GIB)
    zero1.write_text("{not json")
    for text, problem in (("{not json", r"zero1.json:1: malformed JSON"),
                          ("[1]", r"zero1.json: expected a JSON object"),
                          ('{"zero_optimization": {"stage": 4}}', r"stage is 4 in")):
        zero1.write_text(text)
        with pytest.raises(UserError, match=problem):
            estimate(mistral(kind="full", deepspeed=str(zero1),
                             launcher={"kind": "deepspeed", "gpus_per_node": 4}), "a100-80g",
                     suggest=False)


def test_activations_checkpoints_layer_and_logits():
    p = estimate(mistral(), "rtx4090-24g", suggest=False)
    T = 2 * 1024  # micro-batch 2 x sequence 1024
    assert term(p, "activations: checkpoints") == pytest.approx(2 * 4096 * 32 * T / GIB)
    # one QLoRA layer per token, lora_dropout 0.05 on all 7 targets:
    #   2 norms x fp32 input 4*4096                       = 32_768
    #   FlashAttention q, k, v, out: 2 x (2*4096 + 2*1024) = 20_480
    #   MLP gate out (SiLU), SiLU out, up out: 3 x 2 x 14336 = 86_016
    #   adapters: (2 B copy + 1 B mask) x d_in: q,k,v,gate,up 5 x 3 x 4096 + o 3 x 4096
    #             + down 3 x 14336, + lora_A outputs 7 x 2 x 32 = 61_440 + 12_288 + 43_008 + 448
    per_token = 32_768 + 20_480 + 86_016 + 61_440 + 12_288 + 43_008 + 448
    assert layer_activation_bytes(Arch.from_config(mistral()),
                                       settings_from(mistral(), gpus.get("rtx4090-24g"))
                                       ) == per_token == 256_448
    layer = per_token * T + 2 * 2 * (4096 + 14336) * T  # + gradients inside the layer
    # the largest dequantised weight (gate/up/down) in bf16 + its fp32 absmax (1 per 64)
    dequant = 4096 * 14336 * 2 + 4096 * 14336 / 64 * 4
    logits = 12 * T * 32000  # fp32 upcast, fp32 log-softmax, its gradient, input gradient
    # 525.2M + 151.0M + 121.1M = 797.3M > 786.4M: the recomputed layer is the peak here
    assert layer + dequant > logits
    assert term(p, "activations: peak transient (one layer)") == pytest.approx(layer / GIB)
    assert term(p, "bitsandbytes: dequantised weight") == pytest.approx(dequant / GIB)
    full = estimate(mistral(kind="full", optimizer="adamw_torch"), "a100-80g", suggest=False)
    # full fine-tune layer: 2 norms x (4 + 2 + 2) x 4096 + 20_480 + 4 x 2 x 14336 = 200_704
    assert layer_activation_bytes(
        Arch.from_config(mistral(kind="full")),
        settings_from(mistral(kind="full"), gpus.get("a100-80g"))) == 200_704
    nockpt = estimate(mistral(kind="full", optimizer="adamw_torch",
                                   gradient_checkpointing=False), "a100-80g", suggest=False)
    assert term(nockpt, "activations: all layers") == pytest.approx(200_704 * T * 32 / GIB)
    assert term(nockpt, "activations: peak transient (logits & loss)") == pytest.approx(
        logits / GIB)
    assert full.peak_gb < nockpt.peak_gb


def test_large_vocabulary_logits_dpo_and_eager_attention():
    big = mistral(sequence_len=2048, micro_batch_size=1)
    big["meta"]["model"]["vocab_size"] = 128256
    p = estimate(big, "a100-80g", suggest=False)
    assert "logits" in next(t.name for t in p.terms if t.name.startswith("activations: peak"))
    assert term(p, "activations: peak") == pytest.approx(12 * 2048 * 128256 / GIB)  # 2.94 GiB
    dpo = estimate(mistral(kind="dpo", rl="dpo", adapter="lora", load_in_4bit=False,
                                micro_batch_size=1), "a100-80g", suggest=False)
    T = 2 * 1 * 1024  # chosen + rejected
    assert term(dpo, "activations: checkpoints") == pytest.approx(2 * 4096 * 32 * T / GIB)
    assert any("chosen and rejected" in a for a in dpo.assumptions)
    eager = estimate(mistral(attn_implementation="eager"), "a100-80g", suggest=False)
    flash = estimate(mistral(), "a100-80g", suggest=False)
    # eager: fp32 softmax + bf16 copy + bf16 scores = 8 B x 32 heads x 1024^2 x 2 sequences
    scores = 8 * 32 * 1024**2 * 2
    assert term(eager, "activations: peak") - term(flash, "activations: peak") == pytest.approx(
        scores / GIB, rel=1e-6)


def test_breakdown_sums_to_the_peak_and_overhead():
    p = estimate(mistral(), "rtx4090-24g", suggest=False)
    assert sum(t.gb for t in p.terms) == pytest.approx(p.peak_gb, abs=1e-3)
    # the activations: checkpoints + the transient peak (here a layer + its dequantised weight)
    dynamic = (term(p, "activations: checkpoints") + term(p, "activations: peak")
               + term(p, "bitsandbytes: dequantised weight"))
    assert term(p, "CUDA context") == pytest.approx(0.5 + 0.10 * dynamic)
    assert p.usable_gb == pytest.approx(24 * 0.9)
    assert p.fits and p.headroom_gb == pytest.approx(24 - p.peak_gb, abs=1e-3)


def test_flops_per_token_and_time_cost():
    N = P_LIN + 32000 * 4096  # matmul parameters: linears + LM head (the lookup is no matmul)
    attn_fwd = 2 * 2 * 32 * 4096 * (1024 / 2)  # QK^T and AV per token, causal half
    s = settings_from(mistral(), gpus.get("a100-80g"))
    f, how = flops_per_token(Arch.from_config(mistral()), s)
    # LoRA: 2N forward + 2N input gradients (frozen weights need no weight gradient)
    #       + 2N recomputed forward (checkpointing); attention 3x forward + 1x recompute
    assert f == pytest.approx(6 * N + 4 * attn_fwd)
    full = settings_from(mistral(kind="full", gradient_checkpointing=False),
                              gpus.get("a100-80g"))
    f_full, _ = flops_per_token(Arch.from_config(mistral()), full)
    assert f_full == pytest.approx(6 * N + 3 * attn_fwd)
    p = estimate(mistral(), "a100-80g", tokens=1_000_000, suggest=False)
    # 2 epochs x 1e6 tokens x f / (312 TFLOP/s x 0.25 QLoRA MFU) / 3600, at $1.79/h
    hours = 2 * 1_000_000 * f / (312e12 * 0.25) / 3600
    assert p.time.hours == pytest.approx(hours)
    assert p.time.cost_usd == pytest.approx(hours * 1.79)
    p2 = estimate(mistral(), "a100-80g", 4, tokens=1_000_000, price=2.0, mfu=0.5,
                       suggest=False)
    assert p2.time.hours == pytest.approx(2 * 1_000_000 * f / (4 * 312e12 * 0.5) / 3600)
    assert p2.time.cost_usd == pytest.approx(p2.time.hours * 4 * 2.0)
    with pytest.raises(UserError, match="--mfu"):
        estimate(mistral(), "a100-80g", mfu=1.5, suggest=False)


def test_suggestions_ranked_and_reestimated():
    cfg = mistral(kind="full", optimizer="adamw_torch", gradient_checkpointing=False)
    p = estimate(cfg, "rtx4090-24g")
    assert not p.fits
    changes = [s.change for s in p.suggestions]
    order = ["gradient checkpointing", "micro-batch", "8-bit AdamW", "LoRA instead",
             "QLoRA", "sequence_len", "ZeRO-3", "bigger GPU"]
    positions = [next(i for i, c in enumerate(changes) if key in c) for key in order]
    assert positions == sorted(positions), changes
    qlora = next(s for s in p.suggestions if s.change.startswith("QLoRA"))
    redo = copy.deepcopy(cfg)
    redo["meta"]["method"]["kind"] = "qlora"
    redo["axolotl"].update(adapter="qlora", load_in_4bit=True)
    assert qlora.peak_gb == pytest.approx(estimate(redo, "rtx4090-24g").peak_gb, abs=0.01)
    assert qlora.peak_gb < p.peak_gb / 2  # each suggestion is one change on its own
    assert any(s.fits for s in p.suggestions)
    bigger = next(s for s in p.suggestions if "bigger GPU" in s.change)
    assert bigger.fits and "80" in bigger.change  # the cheapest GPU that fits


def test_peak_gb_and_unknown_gpu():
    cfg = compose_recipe("mistral7b-qlora-support").config
    assert peak_gb(cfg, "rtx4090-24g") == estimate(cfg, "rtx4090-24g").peak_gb
    with pytest.raises(UserError, match="known GPUs"):
        estimate(cfg, "rtx9090")


def test_validation_passes_and_fsdp_checkpointing():
    assert evaluations({"eval_steps": 0.1}) == 10  # a fraction of the run: 1 / 0.1
    assert evaluations({"evals_per_epoch": 4, "num_epochs": 2}) == 8
    assert evaluations({"eval_steps": 50}) == 0  # needs the step count: not counted
    # FSDP2 recipes turn off the Trainer's checkpointing and checkpoint through fsdp_config
    cfg = compose_recipe("llama8b-lora-support", "launcher=fsdp2").config
    assert cfg["axolotl"]["gradient_checkpointing"] is False
    p = estimate(cfg, "a100-80g", suggest=False)
    assert p.gpus == 8  # no --gpus: the launcher's gpus_per_node x nnodes
    assert any(t.name == "activations: checkpoints" for t in p.terms)
    # Llama 3.1 8B weights sharded 8 ways: 8.03B x 2 B / 8
    assert term(p, "weights") == pytest.approx(Arch.from_config(cfg).total_params * 2 / 8
                                               / GIB)
    assert estimate(cfg, "a100-80g", 1, suggest=False).gpus == 1  # explicit --gpus 1


def test_cpu_has_no_cuda_context_and_params_b_is_checked():
    p = estimate(mistral(), "cpu", suggest=False)
    # the activations: checkpoints + the transient peak (here a layer + its dequantised weight)
    dynamic = (term(p, "activations: checkpoints") + term(p, "activations: peak")
               + term(p, "bitsandbytes: dequantised weight"))
    assert term(p, "CUDA context") == pytest.approx(0.10 * dynamic)
    wrong = mistral()
    wrong["meta"]["model"]["params_b"] = 6.0  # the architecture numbers give 7.24B
    assert any("params_b says 6.0B" in a for a in estimate(wrong, "a100-80g",
                                                                suggest=False).assumptions)
