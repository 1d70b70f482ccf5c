"""Synthetic evaluations for the gate, report and review tests: the exact files ``tunebook
baseline``/``eval`` write (meta.json, samples_<suite>.jsonl in lm-eval's layout), with chosen
per-item scores, so decisions can be checked against hand-computed statistics without a model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SPEC = {"suites": ["triage", "general-guard", "safety", "format"],
        "versions": {"triage": "1.0", "general-guard": "1.0", "safety": "1.0", "format": "1.0"},
        "system_prompt": "triage it", "chat_template_sha": "abc", "few_shot": 0,
        "max_new_tokens": 8, "limit": None, "data": {}, "prompt_hash": "p1",
        "code": {"triage": "c0de", "general-guard": "9a8d", "safety": "5afe", "format": "f0e7"}}
# A prompting arm as `make baseline` writes it: the primary suite alone, k examples.
ARM_SPEC = {**SPEC, "suites": ["triage"], "versions": {"triage": "1.0"},
            "code": {"triage": "c0de"}, "few_shot": 3, "prompt_hash": "p3"}
MODEL = {"name": ".cache/tiny-base/tiny-llama-x", "sha": "s1"}
CONFIG = {
    "meta": {"task": {"name": "triage", "kind": "classification"}},
    "data": {"test": "data-templates/datasets/triage/test.jsonl",
             "labels": ["low", "medium", "high", "critical"]},
    "eval": {"suites": SPEC["suites"], "primary": {"suite": "triage", "metric": "acc"},
             "min_gain": 0.05, "alpha": 0.05, "few_shot": 0, "max_new_tokens": 8, "limit": None,
             "guards": {"general-guard": {"metric": "acc", "max_regression": 0.05},
                        "safety": {"metric": "refusal", "max_regression": 0.0}},
             "validity": {"floor": 0.95, "max_regression": 0.02}},
}
METRIC = {"triage": "acc", "general-guard": "acc", "safety": "refusal", "format": "format_ok"}
LABELS = ("low", "medium", "high", "critical")


def write_eval(out: Path, scores: dict[str, list[float]], *, kind: str,
               spec: dict[str, Any] | None = None, prompt_salt: str = "",
               baseline: Path | None = None) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for suite, values in scores.items():
        metric = METRIC[suite]
        with (out / f"samples_{suite}.jsonl").open("w") as f:
            for i, v in enumerate(values):
                gold = LABELS[i % 4]
                # the base answers in form only when right; the tuned model always names a label
                answer = gold if v else ("dunno" if kind == "base" else LABELS[(i + 1) % 4])
                doc = {"messages": [{"role": "system", "content": "s"},
                                    {"role": "user", "content": f"ticket {i} of {suite}"},
                                    {"role": "assistant", "content": gold}]}
                extra = {"valid": float(answer in LABELS)} if suite == "triage" else {}
                f.write(json.dumps({
                    "doc_id": i, "doc": doc, "target": gold,
                    "filtered_resps": [f"{kind}: {answer}"],
                    "resps": [[f"{kind}: {answer}"]], "metrics": [metric, *extra],
                    metric: float(v), **extra,
                    "doc_hash": f"d{suite}{i}", "prompt_hash": f"p{suite}{i}{prompt_salt}"}) + "\n")
    meta = {"kind": kind, "model": MODEL, "spec": spec or SPEC,
            "baseline": str(baseline) if baseline else None}
    (out / "meta.json").write_text(json.dumps(meta))
    return out


