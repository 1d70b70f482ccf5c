"""GPU truth for the planner: train a random-initialised model of the recipe's real architecture
for a few steps with the recipe's settings and print measured peak memory beside the plan.

    .venv/bin/python scripts/bench/gpu_memory.py --recipe mistral7b-qlora-support \
        --methods qlora,lora --sequence-len 1024,4096 [--gpu h100-80g] [--emit-points p.yaml]
    .venv/bin/python scripts/bench/gpu_memory.py --recipe mistral7b-qlora-support --scale tiny

``--methods`` re-composes the recipe with ``method=<m>`` for each method (its QLoRA and its LoRA
peaks), ``--sequence-len`` sweeps lengths with one model build per method; a closing table puts
every measurement beside the plan. ``--scale full`` needs a CUDA GPU and refuses at once (exit 2)
without one; Liger kernels the recipe turns on are applied on CUDA only.

Memory does not depend on the weights' values, so no checkpoint is downloaded: the model is
built from ``meta.model.*`` with transformers' own config class for the family (AutoConfig),
initialised directly on the device, and loaded through the same path Axolotl uses for its
settings: bitsandbytes 4-/8-bit via ``from_pretrained(quantization_config=...)`` (from a local
save of the random model), PEFT's ``prepare_model_for_kbit_training`` with Axolotl's cast of
embeddings and norms back to the compute dtype, LoRA via peft, gradient checkpointing
(non-reentrant), the recipe's micro-batch, sequence length and optimiser, bf16 autocast.
It reports ``torch.cuda.max_memory_allocated/reserved`` and tokens/s next to the planner.

``--scale tiny`` shrinks layers/width/vocabulary so the whole path runs on a CPU in seconds (the
test suite does that); memory numbers are only meaningful on a GPU at ``--scale full``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tunebook import env, gpus
from tunebook.compose import compose_recipe
from tunebook.plan.arch import Arch
from tunebook.plan.estimate import estimate as plan_estimate
from tunebook.plan.memory import CUDA_CONTEXT_GIB
from tunebook.plan.settings import Settings, settings_from
from tunebook.plan.throughput import MFU_DEFAULT, MFU_QLORA, flops_per_token

env.quiet_environment()

GIB = 2**30
MODEL_TYPES = {"llama": "llama", "mistral": "mistral", "qwen2": "qwen2", "gemma2": "gemma2",
               "phi3": "phi3"}
TINY = {"layers": 2, "hidden_size": 64, "heads": 4, "intermediate_size": 128,
        "vocab_size": 512, "head_dim": 16, "seq_cap": 64}


def scaled_config(config: dict[str, Any], scale: str) -> dict[str, Any]:
    """The recipe's config, or a tiny copy (same family, method, KV-head ratio, settings)."""
    c = copy.deepcopy(config)
    if scale == "full":
        return c
    m = c["meta"]["model"]
    ratio = max(1, m["heads"] // m["kv_heads"])
    heads = TINY["heads"]
    m.update(layers=TINY["layers"], hidden_size=TINY["hidden_size"], heads=heads,
             kv_heads=max(1, heads // min(ratio, heads)), head_dim=TINY["head_dim"],
             intermediate_size=TINY["intermediate_size"], vocab_size=TINY["vocab_size"])
    arch = Arch.from_config(c)
    m["params_b"] = arch.total_params / 1e9
    ax = c["axolotl"]
    ax["sequence_len"] = min(int(ax["sequence_len"]), TINY["seq_cap"])
    return c


def hf_config(config: dict[str, Any], attn: str) -> Any:
    from transformers import AutoConfig

    m = config["meta"]["model"]
    kw: dict[str, Any] = dict(
        hidden_size=m["hidden_size"], intermediate_size=m["intermediate_size"],
        num_hidden_layers=m["layers"], num_attention_heads=m["heads"],
        num_key_value_heads=m["kv_heads"], vocab_size=m["vocab_size"],
        max_position_embeddings=max(int(config["axolotl"]["sequence_len"]), 128),
        tie_word_embeddings=m["tie_embeddings"], attn_implementation=attn,
    )
    if m.get("head_dim"):
        kw["head_dim"] = m["head_dim"]
        if m["family"] == "gemma2":
            kw["query_pre_attn_scalar"] = m["head_dim"]
    if m["family"] == "mistral":
        kw["sliding_window"] = None
    return AutoConfig.for_model(MODEL_TYPES[m["family"]], **kw)


def attention_for(config: dict[str, Any], device: str) -> tuple[str, str]:
    """The recipe's attention implementation, or the closest one this machine can run."""
    want = str(config["axolotl"].get("attn_implementation") or "sdpa")
    if want == "flash_attention_2":
        if device != "cuda":
            return "sdpa", "flash_attention_2 needs CUDA: sdpa used on CPU"
        try:
            import flash_attn  # noqa: F401
        except ImportError:
            return "sdpa", ("flash_attn is not installed: sdpa used (PyTorch's flash kernel, "
                            "same O(seq) memory)")
    return want, ""


def build_model(config: dict[str, Any], s: Settings, device: str, dtype: Any, attn: str,
                notes: list[str]) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    cfg = hf_config(config, attn)
    torch.manual_seed(0)
    if s.quant_bits in (4, 8):
        from transformers import BitsAndBytesConfig

        with tempfile.TemporaryDirectory(prefix="tb-gpumem-") as tmp:
            with torch.device(device):
                rnd = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
            rnd.save_pretrained(tmp)
            del rnd
            if device == "cuda":
                torch.cuda.empty_cache()
            if s.quant_bits == 4:
                q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=dtype,
                                       bnb_4bit_use_double_quant=s.double_quant,
                                       bnb_4bit_quant_type="nf4", bnb_4bit_quant_storage=dtype,
                                       llm_int8_threshold=6.0)
            else:
                q = BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=6.0)
            model = AutoModelForCausalLM.from_pretrained(
                tmp, quantization_config=q, dtype=dtype, attn_implementation=attn,
                device_map={"": 0 if device == "cuda" else "cpu"})
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model,
                                                use_gradient_checkpointing=s.checkpointing)
        # Axolotl (loaders/model.py) casts norms and embeddings back to the compute dtype
        for name, module in model.named_modules():
            if "norm" in name or name.endswith(("embed_tokens", "lm_head")):
                module.to(dtype)
    else:
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    if s.checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    apply_liger(model, config["axolotl"], device, notes)
    if s.adapter:
        from peft import LoraConfig, get_peft_model

        ax = config["axolotl"]
        model = get_peft_model(model, LoraConfig(
            r=s.r, lora_alpha=int(ax.get("lora_alpha") or 2 * s.r), lora_dropout=s.lora_dropout,
            target_modules=list(s.targets), task_type="CAUSAL_LM"))
    return model


LIGER_KEYS = ("liger_rope", "liger_rms_norm", "liger_glu_activation", "liger_layer_norm",
              "liger_fused_linear_cross_entropy", "liger_cross_entropy")


def liger_kwargs(ax: dict[str, Any]) -> dict[str, bool]:
    """The Liger kernels the recipe turns on, as ``apply_liger_kernel_to_*`` keyword arguments
    (Axolotl's plugin passes the same names without the ``liger_`` prefix; ``glu_activation`` is
    ``swiglu``)."""
    names = {"liger_glu_activation": "swiglu"}
    return {names.get(k, k.removeprefix("liger_")): True for k in LIGER_KEYS if ax.get(k)}


def apply_liger(model: Any, ax: dict[str, Any], device: str, notes: list[str]) -> None:
    kwargs = liger_kwargs(ax)
    if not kwargs:
        return
    if device != "cuda":
        notes.append(f"Liger kernels ({', '.join(kwargs)}) need CUDA: not applied on CPU")
        return
    from liger_kernel.transformers.monkey_patch import _apply_liger_kernel_to_instance

    _apply_liger_kernel_to_instance(model=model, **kwargs)
    notes.append(f"Liger kernels applied: {', '.join(kwargs)}")


def make_optimizer(name: str, params: list[Any], device: str, notes: list[str]) -> Any:
    import torch

    bnb_names = {"adamw_bnb_8bit": "AdamW8bit", "adamw_8bit": "AdamW8bit",
                 "paged_adamw_8bit": "PagedAdamW8bit", "paged_adamw_32bit": "PagedAdamW32bit",
                 "paged_adamw": "PagedAdamW32bit"}
    if name in bnb_names and device == "cuda":
        import bitsandbytes as bnb

        return getattr(bnb.optim, bnb_names[name])(params, lr=1e-5)
    if name in bnb_names:
        notes.append(f"{name} is a CUDA optimiser: torch AdamW used on CPU")
    elif name not in {"adamw_torch", "adamw_torch_fused", "adamw_hf", "adamw"}:
        notes.append(f"optimizer {name!r}: torch AdamW used instead")
    return torch.optim.AdamW(params, lr=1e-5, fused=device == "cuda" and name.endswith("fused"))


def run(config: dict[str, Any], gpu_id: str, steps: int, seq_lens: list[int],
        notes: list[str]) -> list[dict[str, Any]]:
    """Build the model once, then train ``steps`` steps at each sequence length: the static part
    (weights, adapters, optimizer states) is shared, only activations change with length."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    gpu = gpus.get(gpu_id)
    s = settings_from(config, gpu)
    dtype = (torch.bfloat16 if s.dtype_name == "bf16" else
             torch.float16 if s.dtype_name == "fp16" else torch.float32)
    if device == "cpu" and dtype != torch.float32:
        dtype = torch.float32
        notes.append("CPU: fp32 weights and no autocast")
    attn, why = attention_for(config, device)
    if why:
        notes.append(why)
    t0 = time.perf_counter()
    model = build_model(config, s, device, dtype, attn, notes)
    load_s = time.perf_counter() - t0
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(s.optimizer, params, device, notes)
    seqs = s.micro_batch * (2 if s.dpo else 1)
    vocab = int(config["meta"]["model"]["vocab_size"])
    gen = torch.Generator().manual_seed(0)
    common: dict[str, Any] = {
        "device": device if device == "cpu" else torch.cuda.get_device_name(0),
        "attn": attn, "dtype": str(dtype).replace("torch.", ""), "steps": steps,
        "load_s": load_s, "trainable_params": sum(p.numel() for p in params),
        "total_params": sum(p.numel() for p in model.parameters()),
        "quantized_layers": sum(type(mod).__module__.startswith("bitsandbytes")
                                and type(mod).__name__ in {"Linear4bit", "Linear8bitLt"}
                                for mod in model.modules()),
        "versions": _versions(),
    }
    results = []
    for seq_len in seq_lens:
        losses, times = [], []
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            static = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        for _ in range(steps):
            ids = torch.randint(0, vocab, (seqs, seq_len), generator=gen).to(device)
            t = time.perf_counter()
            with torch.autocast(device_type=device, dtype=dtype,
                                enabled=device == "cuda" and dtype != torch.float32):
                out = model(input_ids=ids, labels=ids)
                loss = out.loss
                if s.dpo and s.adapter:  # the reference forward: the base without adapters
                    with torch.no_grad(), model.disable_adapter():
                        model(input_ids=ids).logits.float().mean()
            del out
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=False)  # HF Trainer keeps .grad buffers between steps
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
            losses.append(loss.item())
        timed = times[1:] or times
        r = {**common, "sequence_len": seq_len, "losses": losses,
             "tokens_per_s": seqs * seq_len / (sum(timed) / len(timed)),
             "finite_loss": all(math.isfinite(x) for x in losses)}
        if device == "cuda":
            r.update(static_allocated_gib=static / GIB,
                     max_allocated_gib=torch.cuda.max_memory_allocated() / GIB,
                     max_reserved_gib=torch.cuda.max_memory_reserved() / GIB)
        else:
            r["max_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB
        results.append(r)
    return results


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("torch", "transformers", "peft", "bitsandbytes", "flash-attn"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "-"
    return out


def calibration_points(recipe: str, config: dict[str, Any],
                       reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Measured points in scripts/bench/calibration.yaml's format (GPU runs only)."""
    points = []
    m = config["meta"]["model"]
    model = {k: m[k] for k in ("family", "params_b", "layers", "hidden_size", "heads",
                               "kv_heads", "intermediate_size", "vocab_size", "tie_embeddings")}
    if m.get("head_dim"):
        model["head_dim"] = m["head_dim"]
    for r in reports:
        meas = r["measured"]
        if "max_reserved_gib" not in meas:
            continue
        ax = {k: v for k, v in config["axolotl"].items()
              if k in ("load_in_4bit", "load_in_8bit", "lora_r", "lora_dropout",
                       "lora_target_modules", "optimizer", "micro_batch_size", "bf16", "fp16",
                       "gradient_checkpointing", "attn_implementation", "rl",
                       "liger_fused_linear_cross_entropy", "cut_cross_entropy",
                       "chunked_cross_entropy")}
        ax["sequence_len"] = meas["sequence_len"]
        ax["attn_implementation"] = meas["attn"]
        v = meas["versions"]
        points.append({
            "id": f"gpu-memory-{recipe}-{config['meta']['method']['kind']}-"
                  f"s{meas['sequence_len']}",
            "what": f"{recipe} on {meas['device']}, sequence_len {meas['sequence_len']}, "
                    f"{meas['steps']} steps (scripts/bench/gpu_memory.py)",
            "model": model, "method": config["meta"]["method"]["kind"], "axolotl": ax,
            "kind": "measured", "metric": "torch_reserved",
            "value_gib": round(meas["max_reserved_gib"], 3),
            "source": f"scripts/bench/gpu_memory.py on {meas['device']}, "
                      f"{time.strftime('%Y-%m-%d')}: torch {v['torch']}, transformers "
                      f"{v['transformers']}, peft {v['peft']}, bitsandbytes {v['bitsandbytes']}, "
                      f"flash-attn {v['flash-attn']}",
        })
    return points


def method_config(recipe: str, overrides: str, method: str | None) -> dict[str, Any]:
    """The recipe composed as it is (``method`` None) or with ``method=<method>``: its QLoRA and
    LoRA twins share everything else (model, data, batch, sequence length)."""
    extra = f"method={method}" if method else ""
    return compose_recipe(recipe, " ".join(x for x in (overrides, extra) if x)).config


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", required=True)
    ap.add_argument("--overrides", default="")
    ap.add_argument("--gpu", default=None, help="GPU id for the plan (default: the recipe's)")
    ap.add_argument("--scale", choices=("full", "tiny"), default="full")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--methods", default=None,
                    help="comma-separated methods to measure, e.g. qlora,lora (default: the "
                         "recipe's own)")
    ap.add_argument("--sequence-len", default=None,
                    help="comma-separated lengths to sweep with one model build "
                         "(default: the recipe's axolotl.sequence_len)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--emit-points", type=Path, default=None,
                    help="write the GPU measurements as calibration.yaml points to this file")
    args = ap.parse_args(argv)

    if args.scale == "full":
        import torch

        if not torch.cuda.is_available():
            print("gpu_memory.py --scale full measures GPU memory and needs a CUDA GPU; none is "
                  "visible here (torch.cuda.is_available() is False). Run it where a GPU is, or "
                  "--scale tiny to exercise the same path on the CPU.", file=sys.stderr)
            return 2
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else [None]
    reports, points = [], []
    for method in methods:
        config = scaled_config(method_config(args.recipe, args.overrides, method), args.scale)
        gpu_id = args.gpu or config["meta"]["gpu"]
        seq_lens = ([int(x) for x in args.sequence_len.split(",")] if args.sequence_len
                    else [int(config["axolotl"]["sequence_len"])])
        notes: list[str] = []
        method_reports = [report_of(args.recipe, args.scale, config, gpu_id, meas, notes)
                          for meas in run(config, gpu_id, max(1, args.steps), seq_lens, notes)]
        for r in method_reports:
            _print(r)
        reports += method_reports
        points += calibration_points(args.recipe, config, method_reports)
    print(summary_table(reports))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        body = reports[0] if len(reports) == 1 else reports
        args.json.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    if args.emit_points:
        import yaml

        args.emit_points.write_text(yaml.safe_dump({"points": points}, sort_keys=False),
                                    encoding="utf-8")
        print(f"{len(points)} calibration point(s) written to {args.emit_points}"
              + ("" if points else " (none: measurements need a GPU)"))
    return 0 if all(r["measured"]["finite_loss"] for r in reports) else 1


def report_of(recipe: str, scale: str, config: dict[str, Any], gpu_id: str,
              meas: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """One measurement beside the plan of the same settings (its sequence length and the
    attention that really ran)."""
    c = copy.deepcopy(config)
    c["axolotl"]["sequence_len"] = meas["sequence_len"]
    if meas["attn"] != c["axolotl"].get("attn_implementation"):
        c["axolotl"]["attn_implementation"] = meas["attn"]
    estimate = plan_estimate(c, gpu_id, suggest=False, recipe=recipe)
    gpu = gpus.get(gpu_id)
    s = settings_from(c, gpu)
    arch = Arch.from_config(c)
    f, _ = flops_per_token(arch, s)
    u = MFU_QLORA if s.quant_bits == 4 else MFU_DEFAULT
    report = {
        "recipe": recipe, "method": c["meta"]["method"]["kind"], "scale": scale,
        "gpu_for_plan": gpu_id,
        "plan": {"peak_gb": estimate.peak_gb,
                 "peak_without_context_gb": estimate.peak_gb - CUDA_CONTEXT_GIB,
                 "breakdown": {t.name: round(t.gb, 4) for t in estimate.terms},
                 "tokens_per_s": gpu.bf16_tflops * 1e12 * u / f,
                 "params": arch.total_params},
        "measured": meas, "notes": notes,
    }
    if "max_reserved_gib" in meas:
        report["error_reserved"] = (report["plan"]["peak_without_context_gb"]
                                    / meas["max_reserved_gib"] - 1)
    return report


def summary_table(reports: list[dict[str, Any]]) -> str:
    """Every measurement beside its plan, one line each (GiB; the plan without the CUDA
    context, which torch's counters do not see)."""
    head = (f"{'method':<7} {'sequence_len':>12} {'plan GiB':>9} {'allocated':>10} "
            f"{'reserved':>9} {'plan vs reserved':>17}  device")
    lines = ["plan beside measurement (torch max_memory_allocated / max_memory_reserved)", head]
    for r in reports:
        m, p = r["measured"], r["plan"]
        if "max_reserved_gib" in m:
            meas = (f"{m['max_allocated_gib']:>10.2f} {m['max_reserved_gib']:>9.2f} "
                    f"{r['error_reserved']:>+17.1%}")
        else:
            meas = f"{'-':>10} {'-':>9} {'no GPU':>17}"
        lines.append(f"{r['method']:<7} {m['sequence_len']:>12} "
                     f"{p['peak_without_context_gb']:>9.2f} {meas}  {m['device']}")
    return "\n".join(lines)


def _print(r: dict[str, Any]) -> None:
    m, p = r["measured"], r["plan"]
    print(f"{r['recipe']} ({r['scale']} scale) on {m['device']}: {m['steps']} steps at "
          f"sequence_len {m['sequence_len']}, "
          f"{m['total_params'] / 1e6:.2f}M params ({m['trainable_params'] / 1e6:.3f}M trainable), "
          f"attention {m['attn']}, {m['dtype']}")
    print(f"  loss per step: {', '.join(f'{x:.3f}' for x in m['losses'])}")
    print(f"  plan ({r['gpu_for_plan']}): peak {p['peak_gb']:.3f} GiB "
          f"({p['peak_without_context_gb']:.3f} GiB without the CUDA context)")
    for name, gb in p["breakdown"].items():
        print(f"      {name:<45} {gb:8.3f}")
    if "max_reserved_gib" in m:
        print(f"  measured: max_memory_allocated {m['max_allocated_gib']:.3f} GiB, "
              f"max_memory_reserved {m['max_reserved_gib']:.3f} GiB "
              f"(static after load {m['static_allocated_gib']:.3f}); plan vs reserved "
              f"{r['error_reserved']:+.1%}")
    else:
        print(f"  measured: no GPU here; process max RSS {m['max_rss_gib']:.3f} GiB "
              "(CPU memory is not comparable with the plan)")
    print(f"  tokens/s: measured {m['tokens_per_s']:,.0f}; plan assumes {p['tokens_per_s']:,.0f} "
          f"on {r['gpu_for_plan']}")
    for n in r["notes"]:
        print(f"  note: {n}")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
