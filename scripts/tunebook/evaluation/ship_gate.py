"""The ship gate: tuned vs base on the same held-out items, paired, item by item.

"If it did not clearly improve, do not ship it." Both models answered the same items (same
``doc_hash`` and ``prompt_hash`` in lm-eval's per-sample logs), so the comparison is paired
(``tunebook.evaluation.stats``: exact McNemar for binary metrics, paired bootstrap intervals).

Policy, from the run's recipe ``eval`` section:

- primary ``{suite, metric}`` ships only when the gain is at least ``min_gain`` *and* it is
  significant at ``alpha`` (McNemar p < alpha for a binary metric; the paired-bootstrap
  (1 - alpha) interval above zero for a continuous one);
- each guard ``{suite: {metric, max_regression}}`` fails when the tuned model is worse than
  the base by more than ``max_regression`` (point estimate; its interval is shown so a
  reviewer sees how certain that is).

Exit 0 ship, 1 do not ship (``CheckFailed``), 2 when the two evaluations are not comparable.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tunebook import paths, tracking
from tunebook.errors import UserError
from tunebook.evaluation import harness
from tunebook.evaluation.stats import N_RESAMPLES, SEED, compare
from tunebook.rundir import RunDir

# ------------------------------------------------------------------------------------ pairing


def paired(base_dir: Path, tuned_dir: Path, suite: str,
           metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-item values of ``metric`` for base and tuned, joined on doc_id, prompts checked."""
    base = {r["doc_id"]: r for r in harness.load_samples(base_dir, suite)}
    tuned = {r["doc_id"]: r for r in harness.load_samples(tuned_dir, suite)}
    if set(base) != set(tuned):
        raise UserError(f"suite {suite}: base and tuned evaluated different items "
                        f"({len(base)} vs {len(tuned)}); re-run `make baseline` and `make eval`")
    ids = sorted(base, key=lambda x: int(x) if str(x).isdigit() else str(x))
    for i in ids:
        for h in ("doc_hash", "prompt_hash"):
            if base[i].get(h) != tuned[i].get(h):
                raise UserError(f"suite {suite}, item {i}: {h} differs between base and tuned; "
                                "the two models saw different inputs, so a paired test is "
                                "invalid. Re-run `make baseline` and `make eval`")
    if metric not in base[ids[0]]:
        have = [k for k, v in base[ids[0]].items() if isinstance(v, (int, float))
                and k not in ("doc_id",)]
        raise UserError(f"suite {suite} has no per-item metric {metric!r}; it has "
                        f"{', '.join(have)}. Fix eval.primary / eval.guards in the recipe's task")
    try:
        b = np.array([float(base[i][metric]) for i in ids])
        t = np.array([float(tuned[i][metric]) for i in ids])
    except (TypeError, ValueError):
        raise UserError(f"suite {suite}: {metric!r} is a corpus-level metric (no per-item value); "
                        "gate on a per-item metric such as acc, rougeL or field_f1") from None
    return b, t


# ------------------------------------------------------------------------------------ gate


@dataclass
class Row:
    suite: str
    metric: str
    role: str  # primary | guard | info
    n: int
    base: float
    tuned: float
    delta: float
    ci_low: float
    ci_high: float
    p: float | None  # McNemar exact (binary) or one-sided bootstrap (continuous)
    test: str
    rule: str
    verdict: str  # pass | fail | info


def decide(config: dict[str, Any], base_dir: Path, tuned_dir: Path) -> dict[str, Any]:
    """The gate's rows and decision for one tuned evaluation against its baseline."""
    ev = config["eval"]
    alpha = float(ev.get("alpha", 0.05))
    check_comparable(base_dir, tuned_dir)
    rows: list[Row] = []
    reasons: list[str] = []

    ps, pm = ev["primary"]["suite"], ev["primary"]["metric"]
    c = compare(*paired(base_dir, tuned_dir, ps, pm), alpha)
    min_gain = float(ev.get("min_gain", 0.0))
    significant = (c["p"] < alpha) if c["binary"] else (c["ci_low"] > 0)
    ok = c["delta"] >= min_gain and c["delta"] > 0 and significant
    sig_rule = f"p < {alpha}" if c["binary"] else f"{1 - alpha:.0%} CI > 0"
    rows.append(Row(ps, pm, "primary", rule=f"gain >= {min_gain:g} and {sig_rule}",
                    verdict="pass" if ok else "fail", **_fields(c)))
    if not ok:
        why = []
        if c["delta"] < min_gain or c["delta"] <= 0:
            why.append(f"gain {c['delta']:+.3f} < min_gain {min_gain:g}")
        if not significant:
            why.append(f"not significant ({c['test']}: p={c['p']:.3g})" if c["binary"]
                       else f"{1 - alpha:.0%} CI [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}] "
                            "includes 0")
        reasons.append(f"primary {ps}/{pm}: " + " and ".join(why))

    for suite, guard in (ev.get("guards") or {}).items():
        c = compare(*paired(base_dir, tuned_dir, suite, guard["metric"]), alpha)
        margin = float(guard["max_regression"])
        ok = c["delta"] >= -margin - 1e-12
        rows.append(Row(suite, guard["metric"], "guard", rule=f"drop <= {margin:g}",
                        verdict="pass" if ok else "fail", **_fields(c)))
        if not ok:
            reasons.append(f"guard {suite}/{guard['metric']} regressed {c['delta']:+.3f} "
                           f"(allowed drop: {margin:g})")

    gated = {ps, *(ev.get("guards") or {})}
    for suite in ev["suites"]:
        if suite in gated:
            continue
        metric = first_metric(base_dir, suite)
        if metric:
            c = compare(*paired(base_dir, tuned_dir, suite, metric), alpha)
            rows.append(Row(suite, metric, "info", rule="reported", verdict="info", **_fields(c)))

    decision = "ship" if not reasons else "do not ship"
    return {"decision": decision, "ship": not reasons, "reasons": reasons, "alpha": alpha,
            "min_gain": min_gain, "rows": [asdict(r) for r in rows],
            "baseline": str(base_dir), "eval": str(tuned_dir),
            "n_resamples": N_RESAMPLES, "seed": SEED}


def _fields(c: dict[str, Any]) -> dict[str, Any]:
    return {k: c[k] for k in ("n", "base", "tuned", "delta", "ci_low", "ci_high", "p", "test")}


def first_metric(out_dir: Path, suite: str) -> str | None:
    """The suite's first per-item numeric metric (its headline), from the samples log."""
    rows = harness.load_samples(out_dir, suite)
    if not rows:
        return None
    for name in rows[0].get("metrics") or []:
        if isinstance(rows[0].get(name), (int, float)):
            return name
    return None


def check_comparable(base_dir: Path, tuned_dir: Path) -> None:
    base, tuned = harness.read_meta(base_dir), harness.read_meta(tuned_dir)
    diffs = []
    if any(base["spec"].get(k) != tuned["spec"].get(k)
           for k in ("prompt_hash", "versions", "code")):
        diffs = harness.spec_differences(base["spec"], tuned["spec"])
    if base.get("model") != tuned.get("model"):
        diffs.append(f"base model {base.get('model')} vs {tuned.get('model')}")
    if diffs:
        raise UserError("baseline and tuned evaluation are not comparable: " + "; ".join(diffs)
                        + "; re-run `make baseline` then `make eval`")


def gate_run(run: RunDir, *, log: Any = print) -> dict[str, Any]:
    """Decide for ``run``; print the table; record it in gate.json and the manifest."""
    tuned_dir = run.path / harness.EVAL_DIR
    if not (tuned_dir / harness.META).is_file():
        raise UserError(f"RUN={paths.rel(run.path)} has no evaluation; run `make eval` first")
    meta = harness.read_meta(tuned_dir)
    base_dir = Path(meta["baseline"])
    if not (base_dir / harness.META).is_file():
        raise UserError(f"the baseline {paths.rel(base_dir)} of this evaluation is gone; "
                        "run `make baseline` then `make eval` again")
    config = harness.run_config(run)
    result = decide(config, base_dir, tuned_dir)
    (run.path / "gate.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    run.update_manifest(gate={k: result[k] for k in ("decision", "ship", "reasons", "alpha",
                                                     "min_gain", "rows")})
    tracking.record(run, gate=run.manifest()["gate"])  # (tracking) verdict on the MLflow run
    print_table(result, log)
    return result


def print_table(result: dict[str, Any], log: Any = print) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(title="tuned vs base (paired, same items)", box=box.SIMPLE_HEAVY)
    for col in ("suite", "metric", "role", "n", "base", "tuned", "delta", "CI", "p", "rule",
                "verdict"):
        table.add_column(col, justify="right" if col in ("n", "base", "tuned", "delta", "p")
                         else "left")
    colours = {"pass": "green", "fail": "bold red", "info": "dim"}
    for r in result["rows"]:
        table.add_row(r["suite"], r["metric"], r["role"], str(r["n"]), f"{r['base']:.3f}",
                      f"{r['tuned']:.3f}", f"{r['delta']:+.3f}",
                      f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]",
                      "-" if r["p"] is None else f"{r['p']:.2g}", r["rule"],
                      f"[{colours[r['verdict']]}]{r['verdict']}[/]")
    console = Console(width=140)
    console.print(table)
    verdict = "[bold green]SHIP[/]" if result["ship"] else "[bold red]DO NOT SHIP[/]"
    why = "" if result["ship"] else ": " + "; ".join(result["reasons"])
    console.print(f"gate: {verdict}{why}")
