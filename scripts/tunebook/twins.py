"""Tiny architecture twins: small random models of each recipe's architecture class, built here.

No model hub is reachable here, in CI or on an air-gapped box, so every test model is built
locally, deterministically and offline:

- a **twin** of a family (``llama``, ``mistral``, ``qwen2``, ``gemma2``, ``phi3``) is a
  ~0.3-0.6M-parameter random-initialised model of the *same class* as the recipe's base (attention
  layout and KV-head ratio, activation, tied embeddings, RoPE settings, Gemma 2 soft-capping and
  sliding window) with a byte-level BPE tokenizer trained on the shipped task data and the
  family's real chat template (``data-templates/chat-templates/<family>.jinja``). It checks that
  a recipe *trains* (``tunebook smoke``), not what it learns.
- the **tiny base** (``.cache/tiny-base/tiny-llama``, the base of the embedded default recipe
  ``tiny-lora-triage``) is a slightly larger Llama twin *pre-trained* for a few hundred seeded
  steps of causal LM on the shipped train texts (support and clause conversations, ticket texts,
  system prompts; never a triage label), so that fine-tuning it is a real fine-tune: the base
  writes fluent-ish support text and has never seen a triage answer.

Everything is cached under ``.cache/`` in a directory named by a hash over the builder's
parameters, the tokenizer corpus and the chat template, so an edited dataset or template builds
a fresh twin and the same inputs always give the same bytes (same seed => identical weights).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tunebook import families, paths

BUILDER_VERSION = 1  # bump when the build procedure changes, so caches rebuild
SEED = 1234
VOCAB_SIZE = 1536
TINY_BASE_NAME = "tiny-llama"  # .cache/tiny-base/tiny-llama: a stable link to the current build
# The shipped tasks whose data trains the twins' tokenizers and pre-trains the tiny base. A task
# of one's own (`make new-task`) adds files under data-templates/ but changes neither: the twins,
# the tiny base and so the embedded default stay byte-identical, and the tiny base has never
# seen the new task's answers when its baseline is measured.
CORPUS_TASKS = ("clauses", "support", "support-pref", "triage")


# The tiny base of the embedded default: a Llama twin, larger, pre-trained briefly (see module doc).
TINY_BASE = {
    "family": "llama",
    "config": {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
               "num_attention_heads": 4, "num_key_value_heads": 1},
    "pretrain": {"steps": 200, "batch_size": 16, "sequence_len": 128, "learning_rate": 3e-3,
                 "warmup": 20, "seed": SEED},
}


# -- corpus ------------------------------------------------------------------------------------

def _shipped(file: Path) -> bool:
    """A file of the format examples or of a shipped task (CORPUS_TASKS)."""
    rel = file.relative_to(paths.DATA_TEMPLATES).parts
    if rel[0] == "datasets":
        return len(rel) > 2 and rel[1] in CORPUS_TASKS
    if rel[0] == "prompts":
        return file.name in {f"{task}-system.txt" for task in CORPUS_TASKS}
    return True


def corpus_files() -> list[Path]:
    """The tokenizer corpus: the format examples, the shipped tasks' data and their prompts."""
    root = paths.DATA_TEMPLATES
    files = sorted(root.rglob("*.jsonl")) + sorted((root / "prompts").glob("*.txt"))
    return [f for f in files if f.is_file() and _shipped(f)]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def corpus_texts(files: list[Path] | None = None) -> Iterator[str]:
    for file in files if files is not None else corpus_files():
        if file.suffix == ".jsonl":
            for line in file.read_text(encoding="utf-8").splitlines():
                line = line.strip()
                if not line:
                    continue
                try:
                    yield from _strings(json.loads(line))
                except json.JSONDecodeError:
                    yield line
        else:
            yield file.read_text(encoding="utf-8")


def _hash(parts: dict[str, Any], files: list[Path]) -> str:
    h = hashlib.sha256(json.dumps(parts, sort_keys=True).encode())
    for f in files:
        h.update(paths.rel(f).encode())
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()[:12]


def template_path(family: str) -> Path:
    return families.get(family).chat_template


def twin_params(family: str) -> dict[str, Any]:
    spec = families.get(family)
    built_from = {k: getattr(spec, k) for k in ("model_type", "architecture", "bos", "eos", "pad",
                                                "specials", "twin_config")}
    return {"builder": BUILDER_VERSION, "seed": SEED, "vocab": VOCAB_SIZE, "spec": built_from,
            "template": template_path(family).read_text(encoding="utf-8")}


def twin_path(family: str) -> Path:
    """Where the twin of ``family`` lives (cheap: hashes inputs, builds nothing)."""
    return paths.CACHE / "twins" / f"{family}-{_hash(twin_params(family), corpus_files())}"


# -- build -------------------------------------------------------------------------------------

@contextlib.contextmanager
def _lock(target: Path) -> Iterator[None]:
    """One builder per target across processes (pytest -n 2 builds twins concurrently)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _complete(d: Path) -> bool:
    return (d / "tunebook-twin.json").is_file()


def twin_dir(family: str) -> Path:
    """The twin of ``family``, built if missing; loadable by ``AutoModelForCausalLM`` and
    ``AutoTokenizer.from_pretrained``."""
    target = twin_path(family)
    if _complete(target):
        return target
    with _lock(target):
        if not _complete(target):
            _build_into(target, lambda tmp: build_twin(family, tmp))
    return target


def _build_into(target: Path, build: Any) -> None:
    tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    build(tmp)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)


def train_tokenizer(family: str, files: list[Path] | None = None) -> Any:
    """Byte-level BPE over the shipped text, wrapped with the family's specials and template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    spec = families.get(family)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    if family == "qwen2":
        # AutoTokenizer loads a qwen2 model's tokenizer as Qwen2Tokenizer whatever the saved
        # class, and that class re-installs Qwen's pre-tokenizer: train with the same one.
        from tokenizers import Regex, normalizers
        from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, min_frequency=2,
                                  special_tokens=list(spec.specials), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(corpus_texts(files)), trainer)
    extra: dict[str, str] = {}
    if "<unk>" in spec.specials:
        extra["unk_token"] = "<unk>"
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=spec.bos, eos_token=spec.eos,
                                   pad_token=spec.pad, model_max_length=4096, **extra)
    fast.chat_template = template_path(family).read_text(encoding="utf-8")
    return fast


def model_config(family: str, tokenizer: Any, overrides: dict[str, Any] | None = None) -> Any:
    from transformers import AutoConfig

    spec = families.get(family)
    values = {**spec.twin_config, **(overrides or {})}
    ids = {"eos_token_id": tokenizer.convert_tokens_to_ids(spec.eos),
           "pad_token_id": tokenizer.convert_tokens_to_ids(spec.pad),
           "bos_token_id": tokenizer.convert_tokens_to_ids(spec.bos) if spec.bos else None}
    config = AutoConfig.for_model(spec.model_type, vocab_size=len(tokenizer), **values, **ids)
    config.architectures = [spec.architecture]
    return config


def build_twin(family: str, out: Path, *, seed: int = SEED,
               config_overrides: dict[str, Any] | None = None) -> Path:
    """Build the twin of ``family`` into ``out`` (deterministic for a given seed and inputs)."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    spec = families.get(family)
    files = corpus_files()
    tokenizer = train_tokenizer(family, files)
    config = model_config(family, tokenizer, config_overrides)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    out.mkdir(parents=True, exist_ok=True)
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    _pin_tokenizer_class(out)
    _check_tokenizer_roundtrip(out, tokenizer)
    (out / "tunebook-twin.json").write_text(json.dumps({
        "family": family, "architecture": spec.architecture, "seed": seed,
        "parameters": sum(p.numel() for p in model.parameters()),
        "corpus": [paths.rel(f) for f in files], "builder": BUILDER_VERSION,
    }, indent=2) + "\n", encoding="utf-8")
    return out


def _pin_tokenizer_class(out: Path) -> None:
    """Make ``AutoTokenizer`` load the saved fast tokenizer as is, whatever the model type
    (else ``model_type: qwen2`` picks Qwen2Tokenizer, which adds tokens of its own)."""
    cfg_file = out / "tokenizer_config.json"
    cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_file.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")


PROBE = "<|im_start|>user\nOrder #12345 hasn't arrived!! Überweisung 2024-06-01, 3.5 kg<|im_end|>"


def _check_tokenizer_roundtrip(out: Path, built: Any) -> None:
    """What ``AutoTokenizer`` loads from ``out`` must tokenize exactly like what was built."""
    loaded = load_tokenizer(out)
    for text in (PROBE, built.apply_chat_template(
            [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi 42"},
             {"role": "assistant", "content": "Hello!"}], tokenize=False)):
        a = loaded(text, add_special_tokens=False)["input_ids"]
        b = built(text, add_special_tokens=False)["input_ids"]
        if a != b or len(loaded) != len(built):
            raise RuntimeError(f"twin tokenizer in {out} does not round-trip through "
                               f"AutoTokenizer ({type(loaded).__name__}): {a} != {b}")


# -- the pre-trained tiny base of the embedded default -----------------------------------------

def tiny_base_link() -> Path:
    return paths.CACHE / "tiny-base" / TINY_BASE_NAME


def pretrain_files() -> list[Path]:
    """The shipped tasks' train splits and prompts only: the base never sees val/test rows."""
    root = paths.DATA_TEMPLATES
    files = sorted(root.glob("datasets/*/train.jsonl")) + sorted((root / "prompts").glob("*.txt"))
    return [f for f in files if _shipped(f)]


def tiny_base_path() -> Path:
    params = {"twin": twin_params(TINY_BASE["family"]), "tiny": TINY_BASE}
    h = _hash(params, corpus_files() + [f for f in pretrain_files() if f not in corpus_files()])
    return paths.CACHE / "tiny-base" / f"{TINY_BASE_NAME}-{h}"


def tiny_base_dir() -> Path:
    """The pre-trained tiny base, built if missing; ``.cache/tiny-base/tiny-llama`` links to it."""
    target = tiny_base_path()
    link = tiny_base_link()
    if not _complete(target):
        with _lock(target):
            if not _complete(target):
                _build_into(target, _build_tiny_base)
    if not link.is_symlink() or os.readlink(link) != target.name:
        tmp = link.with_name(f".{link.name}.{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(target.name)
        if link.exists() and not link.is_symlink():
            shutil.rmtree(link)
        os.replace(tmp, link)
    return target


def pretrain_texts(tokenizer: Any) -> list[str]:
    """Support and clause conversations rendered with the chat template, ticket texts alone,
    and the system prompts. Triage answers are left out: the label task stays new."""
    texts: list[str] = []
    for file in pretrain_files():
        if file.suffix != ".jsonl":
            texts.append(file.read_text(encoding="utf-8"))
            continue
        task = file.parent.name
        for line in file.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            messages = row.get("messages")
            if messages is None:  # preference rows: prompt + chosen reply
                prompt = row.get("prompt")
                chosen = row.get("chosen")
                if isinstance(prompt, list) and isinstance(chosen, dict):
                    messages = [*prompt, chosen]
            if not messages:
                continue
            if task == "triage":
                texts.extend(m["content"] for m in messages if m.get("role") == "user")
            else:
                texts.append(tokenizer.apply_chat_template(messages, tokenize=False))
    return texts


def _build_tiny_base(out: Path) -> Path:
    import torch
    from transformers import AutoModelForCausalLM

    spec = TINY_BASE
    pre = spec["pretrain"]
    torch.set_num_threads(1)  # tiny matmuls gain nothing from threads; shared cores stall them
    build_twin(spec["family"], out, seed=pre["seed"], config_overrides=spec["config"])
    tokenizer = load_tokenizer(out)
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    ids: list[int] = []
    for text in pretrain_texts(tokenizer):
        ids.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        ids.append(tokenizer.eos_token_id)
    data = torch.tensor(ids, dtype=torch.long)
    seq, batch, steps = pre["sequence_len"], pre["batch_size"], pre["steps"]
    gen = torch.Generator().manual_seed(pre["seed"])
    torch.manual_seed(pre["seed"])
    opt = torch.optim.AdamW(model.parameters(), lr=pre["learning_rate"], weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / pre["warmup"]) * max(0.05, 1 - s / steps))
    model.train()
    losses = []
    for _ in range(steps):
        starts = torch.randint(0, len(data) - seq - 1, (batch,), generator=gen)
        x = torch.stack([data[s:s + seq] for s in starts.tolist()])
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    meta_file = out / "tunebook-twin.json"
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    meta["pretrain"] = {**pre, "tokens": len(ids), "first_loss": round(losses[0], 4),
                        "last_loss": round(sum(losses[-10:]) / 10, 4)}
    meta_file.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return out


# -- what other modules call -------------------------------------------------------------------

def load_tokenizer(path: Path | str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def _builder(base: str) -> Any:
    """How to build ``base`` (an ``axolotl.base_model``) when it is one of ours, else ``None``."""
    p = Path(base) if os.path.isabs(base) else paths.ROOT / base
    twins_root = (paths.CACHE / "twins").resolve()
    if p.resolve(strict=False).parent == twins_root or p.parent.resolve() == twins_root:
        family = p.name.rsplit("-", 1)[0]
        if p.name == twin_path(family).name:
            return lambda: twin_dir(family)
    if p.absolute() == tiny_base_link().absolute() or p.name.startswith(TINY_BASE_NAME):
        return tiny_base_dir  # the directory itself, as render records any base
    return None


def built_here(base: str) -> bool:
    """Whether ``base`` is one of ours (a twin or the tiny base), built here, never downloaded."""
    return _builder(base) is not None


def ensure_base(config: dict[str, Any]) -> str:
    """Build the recipe's ``axolotl.base_model`` when it is one of ours (a twin or the tiny
    base) and return it; a hub id or another local path is returned unchanged."""
    base = str(config["axolotl"]["base_model"])
    build = _builder(base)
    return str(build()) if build is not None else base


def tokenizer_for(config: dict[str, Any], *, full: bool = True) -> Any:
    """The recipe's real tokenizer when ``axolotl.base_model`` is in the local HF cache (never
    downloaded), else its twin's (or the tiny base's, which is the real one of the default).

    ``full=False`` gives the data gate's torch-free ``ChatTokenizer`` of the same files (chat
    template and token counts only), which loads in well under a second."""
    from tunebook.data import chat_tokenizer

    load = load_tokenizer if full else chat_tokenizer.load
    base = ensure_base(config)
    if Path(base).is_dir():
        return load(base)
    if full:
        with contextlib.suppress(OSError, ValueError):  # not in the local HF cache
            return load_tokenizer(base)
    elif (snapshot := chat_tokenizer.cached_hub_dir(base)) is not None:
        return chat_tokenizer.load(snapshot, name_or_path=base)
    return load(twin_dir(config["meta"]["model"]["family"]))
