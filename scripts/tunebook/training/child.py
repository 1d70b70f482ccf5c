"""The training process: ``python -m tunebook.training.child <axolotl.yaml> --seed N --result F``.

It seeds torch *before* Axolotl builds the LoRA adapter (Axolotl seeds only the Trainer, so the
adapter init would differ per process and runs would not reproduce), then calls Axolotl's own
``axolotl.cli.train.do_cli``. Axolotl's ``validate_config`` runs only here (the parent checks
every key without importing Axolotl); a config it rejects ends the process with exit 2 and the
outcome ``invalid``, named key by key. The child records how training ended in a small JSON file
(``RESULT_FILE``), because Axolotl exits 0 on Ctrl-C after saving a partial adapter: completion
is judged from the trainer state (the final step reached, or early stopping).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
from pathlib import Path
from typing import Any

from tunebook import env
from tunebook.axolotl_schema import rejection

RESULT_FILE = "result.json"  # written into the run directory


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def child_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tunebook.training.child")
    parser.add_argument("config")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--result", required=True)
    parser.add_argument("--resume-from", default=None)
    args = parser.parse_args(argv)
    sys.argv = [sys.argv[0]]  # Axolotl parses its own CLI flags from sys.argv
    env.hush_library_notices()

    import torch

    if not torch.cuda.is_available():
        # CPU runs train tiny models: one intra-op thread is as fast on an idle 2-core machine
        # and 5-10x faster on a shared one (OpenMP barriers stall when cores are oversubscribed).
        torch.set_num_threads(int(os.environ.get("TUNEBOOK_CPU_THREADS", "1")))
        _keep_4bit_weights_trainable_on_cpu()
    torch.manual_seed(args.seed)  # before get_peft_model: the LoRA init must reproduce

    import axolotl.cli.config as axolotl_config
    import axolotl.train as axolotl_train
    from axolotl.cli.train import do_cli

    state: dict[str, Any] = {"outcome": "failed", "interrupted": False, "trainer": None}
    original_handler_setup = axolotl_train.setup_signal_handler
    original_execute = axolotl_train.execute_training
    original_validate = axolotl_config.validate_config

    def validate_config(*args: Any, **kwargs: Any) -> Any:
        """Axolotl's own validation, the one check ``tunebook train`` leaves to this process:
        a rejection is the user's config, reported as such, not a crash."""
        try:
            return original_validate(*args, **kwargs)
        except Exception as e:
            state["rejected"] = rejection(e)
            raise

    def setup_signal_handler(cfg: Any, model: Any) -> None:
        """Axolotl's SIGINT handler saves the adapter and exits 0; remember that it fired."""
        original_handler_setup(cfg, model)
        axolotl_handler = signal.getsignal(signal.SIGINT)

        def handler(signum: int, frame: Any) -> None:
            state["interrupted"] = True
            if callable(axolotl_handler):
                axolotl_handler(signum, frame)
            raise KeyboardInterrupt

        signal.signal(signal.SIGINT, handler)

    def execute_training(cfg: Any, trainer: Any, resume_from_checkpoint: Any) -> None:
        state["trainer"] = trainer
        state["resume_from_checkpoint"] = resume_from_checkpoint
        original_execute(cfg, trainer, resume_from_checkpoint)
        state["returned"] = True

    axolotl_train.setup_signal_handler = setup_signal_handler
    axolotl_train.execute_training = execute_training
    axolotl_config.validate_config = validate_config
    kwargs = {"resume_from_checkpoint": args.resume_from} if args.resume_from else {}
    code = 0
    try:
        do_cli(config=args.config, **kwargs)
    except (KeyboardInterrupt, SystemExit) as e:
        state["interrupted"] = True
        code = 130 if isinstance(e, KeyboardInterrupt) or not e.code else int(e.code)
    except BaseException:
        _write_result(args.result, state, failed=True)
        if not state.get("rejected"):
            raise
        print(f"tunebook: {args.config}: {state['rejected']}", flush=True)
        return 2
    _write_result(args.result, state)
    return code


def _stop_reason(trainer: Any, global_step: int, max_steps: int) -> str:
    """Why the training loop ended: the last step, early stopping, the loss watchdog, or else."""
    if max_steps and global_step >= max_steps:
        return "max_steps"
    callbacks = getattr(getattr(trainer, "callback_handler", None), "callbacks", [])
    for cb in callbacks:
        name = type(cb).__name__
        if name == "LossWatchDogCallback" and cb.violations >= cb.patience:
            return "loss_watchdog"
        if name == "EarlyStoppingCallback" and (
                cb.early_stopping_patience_counter >= cb.early_stopping_patience):
            return "early_stopping"
    return "other"


def _keep_4bit_weights_trainable_on_cpu() -> None:
    """bitsandbytes 0.50.2 repacks a ``Linear4bit`` for its CPU *inference* kernel the first time
    it runs in eval mode (Axolotl validates at step 0) and then trains through that kernel, which
    has no autograd (gradients stop silently) and fails on biased layers (Qwen2's q/k/v: "a view
    of a leaf Variable ... in-place"). On CPU, keep the trainable layout."""
    try:
        from bitsandbytes.nn import modules
    except ImportError:
        return
    forward = modules.Linear4bit.forward

    def trainable_forward(self: Any, x: Any) -> Any:
        self.support_avx512bf16_for_cpu = False
        return forward(self, x)

    modules.Linear4bit.forward = trainable_forward


def _write_result(path: str, state: dict[str, Any], *, failed: bool = False) -> None:
    trainer = state.get("trainer")
    ts = getattr(trainer, "state", None)
    global_step = getattr(ts, "global_step", 0) or 0
    max_steps = getattr(ts, "max_steps", 0) or 0
    finished_loop = bool(state.get("returned")) and not state["interrupted"]
    reason = _stop_reason(trainer, global_step, max_steps) if finished_loop else None
    if state.get("rejected"):
        outcome = "invalid"
    elif failed:
        outcome = "failed"
    elif state["interrupted"]:
        outcome = "interrupted"
    elif reason in ("max_steps", "early_stopping"):
        outcome = "completed"  # the last step, or early stopping on validation loss
    elif trainer is None or reason == "loss_watchdog":
        outcome = "failed"  # Axolotl's loss watchdog aborted a diverging run
    else:
        outcome = "interrupted"
    result = {
        "outcome": outcome,
        "global_step": global_step,
        "max_steps": max_steps,
        "stop_reason": reason,
        "linear4bit_layers": sum(type(m).__name__ == "Linear4bit"
                                 for m in getattr(trainer, "model", None).modules())
        if trainer is not None else 0,
        "early_stopped": reason == "early_stopping",
        "best_metric": getattr(ts, "best_metric", None),
        "best_model_checkpoint": getattr(ts, "best_model_checkpoint", None),
        "resume_from_checkpoint": state.get("resume_from_checkpoint"),
        "error": state.get("rejected"),
        "log_history": [{k: v for k, v in entry.items() if _finite(v) or isinstance(v, str)
                         or k in ("loss", "eval_loss")}
                        for entry in (getattr(ts, "log_history", None) or [])],
    }
    Path(path).write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(child_main())
