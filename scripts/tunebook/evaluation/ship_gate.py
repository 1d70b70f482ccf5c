"""The ship gate: tuned vs base on the same held-out items, paired, item by item.

"If it did not clearly improve, do not ship it." Both models answered the same items (same
``doc_hash`` in lm-eval's per-sample logs; the same ``prompt_hash`` too, except for the base's
few-shot arms), so every comparison is paired (``tunebook.evaluation.stats``).

The policy, from the run's recipe ``eval`` section, rule by rule (``DECISION`` below is the
text the report prints, so the two cannot drift):

1. **Primary** ``{suite, metric}``: the tuned model, prompted as it will be deployed
   (``few_shot`` examples, 0 by default), against the *best* prompting arm of the base
   (``baseline_shots``, default 0 and 3 examples from the train split): it ships only when the
   gain is at least ``min_gain`` and significant at ``alpha`` (exact McNemar p < alpha for a 0/1
   metric; the seeded paired-bootstrap ``1 - alpha`` interval above 0 for a continuous one).
2. **Validity** (classification: ``valid``; extraction: ``schema_valid``): a guard of the
   primary suite: at least ``validity.floor`` of the tuned replies have the required form, and
   it is non-inferior to the base by ``validity.max_regression``.
3. **Guards** ``{suite: {metric, max_regression}}``: non-inferiority: the one-sided
   ``1 - alpha`` lower confidence bound of the paired difference (paired t) must be at least
   ``-max_regression``; with a margin of 0, no item may get worse. Each row carries the bound,
   the test's power when nothing truly changed, and the smallest margin the suite can
   demonstrate at its size.
4. **Nothing to forget**: a guard whose base is at chance (a 0/1 metric whose successes are
   not significantly above guessing: ``1/choices`` for multiple choice, 0 for free text) is
   reported as ``n/a``, never silently passed, and does not decide.

Exit 0 ship, 1 do not ship (``CheckFailed``), 2 when the evaluations are not comparable.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tunebook import paths, tracking
from tunebook.errors import UserError
from tunebook.evaluation import harness, kinds, stats
from tunebook.evaluation.stats import N_RESAMPLES, SEED, compare
from tunebook.rundir import RunDir

DECISION = (
    "Primary: the tuned model (prompted as deployed) against the best prompting arm of the "
    "base; ships when the gain is at least min_gain and significant at alpha (exact McNemar "
    "for 0/1 metrics, paired-bootstrap interval above 0 otherwise). Validity and guards: "
    "non-inferiority, the one-sided lower confidence bound of the paired difference (paired t) "
    "at least -max_regression, or, with a margin of 0, no item worse; the validity metric must "
    "also reach its floor. A guard on which the base is at chance has nothing to forget: "
    "reported as n/a, not counted."
)


# ------------------------------------------------------------------------------------ pairing


def paired(base_dir: Path, tuned_dir: Path, suite: str, metric: str, *,
           same_prompts: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Per-item values of ``metric`` for base and tuned, joined on doc_id, the items checked
    (and the prompts, except for a base arm with other few-shot examples)."""
    base = {r["doc_id"]: r for r in harness.load_samples(base_dir, suite)}
    tuned = {r["doc_id"]: r for r in harness.load_samples(tuned_dir, suite)}
    if set(base) != set(tuned):
        raise UserError(f"suite {suite}: base and tuned evaluated different items "
                        f"({len(base)} vs {len(tuned)}); re-run `make baseline` and `make eval`")
    ids = sorted(base, key=lambda x: int(x) if str(x).isdigit() else str(x))
    for i in ids:
        for h in ("doc_hash", "prompt_hash") if same_prompts else ("doc_hash",):
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
    role: str  # primary | validity | guard | info
    n: int
    base: float
    tuned: float
    delta: float
    ci_low: float  # primary/info: the two-sided interval; validity/guard: the one-sided bound
    ci_high: float
    p: float | None  # McNemar exact (binary) or one-sided bootstrap (continuous); guards: None
    test: str
    rule: str
    verdict: str  # pass | fail | n/a | info
    margin: float | None = None  # validity/guard: the allowed drop
    power: float | None = None  # guard: the test's power when nothing truly changed
    min_margin: float | None = None  # guard: the smallest margin demonstrable at this n
    arm: str | None = None  # primary: the base arm compared with


def chance_rate(out_dir: Path, suite: str) -> float:
    """What guessing scores on a suite: 1/choices for multiple choice, 0 for free text."""
    rows = harness.load_samples(out_dir, suite)
    rates = [1 / len(r["resps"]) if isinstance(r.get("resps"), list) and len(r["resps"]) > 1
             else 0.0 for r in rows]
    return float(np.mean(rates)) if rates else 0.0


def _guard_row(suite: str, metric: str, role: str, b: np.ndarray, t: np.ndarray, margin: float,
               alpha: float, rate: float, rule: str) -> tuple[Row, bool]:
    """A non-inferiority row; (row, whether the base is at chance: nothing to forget)."""
    ni = stats.non_inferiority(b, t, margin, alpha)
    at_chance, chance_p = (stats.chance(b, rate, alpha) if stats.is_binary(b, t)
                           else (False, 1.0))
    row = Row(suite, metric, role, n=len(b), base=float(np.mean(b)), tuned=float(np.mean(t)),
              delta=float(np.mean(t) - np.mean(b)), ci_low=ni["bound"], ci_high=ni["upper"],
              p=None, test=ni["test"], rule=rule, verdict="pass" if ni["passes"] else "fail",
              margin=margin, power=ni["power"], min_margin=ni["min_margin"])
    if at_chance:
        row.verdict = "n/a"
        row.rule = (f"base at chance ({row.base:.3f} vs {rate:.3f} by guessing, binomial "
                    f"p={chance_p:.2g}): nothing to forget; reported, not counted")
    return row, at_chance


def decide(config: dict[str, Any], base_dir: Path, tuned_dir: Path,
           arms: dict[str, Path] | None = None) -> dict[str, Any]:
    """The gate's rows and decision for one tuned evaluation against its baseline (the
    deployed prompting arm) and the base's other arms (``{"3-shot": dir}``)."""
    ev = config["eval"]
    alpha = float(ev.get("alpha", 0.05))
    check_comparable(base_dir, tuned_dir)
    deployed = f"{int(ev.get('few_shot') or 0)}-shot"
    arms = {deployed: base_dir, **{k: Path(v) for k, v in (arms or {}).items()}}
    for name, arm_dir in arms.items():
        if arm_dir != base_dir:
            check_arm(arm_dir, base_dir, name)
    rows: list[Row] = []
    reasons: list[str] = []

    ps, pm = ev["primary"]["suite"], ev["primary"]["metric"]
    pairs = {name: paired(d, tuned_dir, ps, pm, same_prompts=d == base_dir)
             for name, d in arms.items()}
    base_arms = {name: float(np.mean(b)) for name, (b, _t) in pairs.items()}
    compared = max(base_arms, key=lambda k: (base_arms[k], k == deployed))
    c = compare(*pairs[compared], alpha)
    min_gain = float(ev.get("min_gain", 0.0))
    significant = (c["p"] < alpha) if c["binary"] else (c["ci_low"] > 0)
    ok = c["delta"] >= min_gain and c["delta"] > 0 and significant
    sig_rule = f"p < {alpha}" if c["binary"] else f"{1 - alpha:.0%} CI > 0"
    rows.append(Row(ps, pm, "primary", rule=f"gain over the best base arm ({compared}) >= "
                    f"{min_gain:g} and {sig_rule}", verdict="pass" if ok else "fail",
                    arm=compared, **_fields(c)))
    if not ok:
        why = []
        if c["delta"] < min_gain or c["delta"] <= 0:
            why.append(f"gain {c['delta']:+.3f} over the {compared} base < min_gain {min_gain:g}")
        if not significant:
            why.append(f"not significant ({c['test']}: p={c['p']:.3g})" if c["binary"]
                       else f"{1 - alpha:.0%} CI [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}] "
                            "includes 0")
        reasons.append(f"primary {ps}/{pm}: " + " and ".join(why))

    validity = kinds.Scorer.from_config(config).validity_metric
    if validity:
        v = ev.get("validity") or {}
        floor, margin = float(v.get("floor", 0.95)), float(v.get("max_regression", 0.02))
        b, t = paired(base_dir, tuned_dir, ps, validity)
        row, at_chance = _guard_row(ps, validity, "validity", b, t, margin, alpha, 0.0,
                                    f"tuned >= {floor:g} and non-inferior by {margin:g}")
        floor_ok = row.tuned >= floor
        if at_chance:  # the base never produced the form: only the floor decides
            row.rule = f"tuned >= {floor:g} (the base never produced the form: no drop to test)"
            row.verdict = "pass" if floor_ok else "fail"
        elif not floor_ok:
            row.verdict = "fail"
        rows.append(row)
        if row.verdict == "fail":
            reasons.append(f"validity {ps}/{validity}: " + (
                f"tuned {row.tuned:.3f} < floor {floor:g}" if not floor_ok
                else _why_inferior(b, t, row)))

    for suite, guard in (ev.get("guards") or {}).items():
        margin = float(guard["max_regression"])
        b, t = paired(base_dir, tuned_dir, suite, guard["metric"])
        rule = "no item worse" if margin == 0 else f"bound >= -{margin:g}"
        row, _at_chance = _guard_row(suite, guard["metric"], "guard", b, t, margin, alpha,
                                     chance_rate(base_dir, suite), rule)
        rows.append(row)
        if row.verdict == "fail":
            reasons.append(f"guard {suite}/{guard['metric']}: " + _why_inferior(b, t, row))

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
            "base_arms": base_arms, "compared_arm": compared, "test": DECISION,
            "baseline": str(base_dir), "arms": {k: str(v) for k, v in arms.items()},
            "eval": str(tuned_dir), "n_resamples": N_RESAMPLES, "seed": SEED}


def _why_inferior(b: np.ndarray, t: np.ndarray, row: Row) -> str:
    if row.margin == 0:
        worse = int(np.sum(np.asarray(t) < np.asarray(b)))
        return f"{worse} item(s) got worse; with max_regression 0 none may"
    return (f"lower bound {row.ci_low:+.3f} < -{row.margin:g} (delta {row.delta:+.3f}, "
            f"n={row.n}; this suite demonstrates a margin of {row.min_margin:.3f} at 80% power)")


def _fields(c: dict[str, Any]) -> dict[str, Any]:
    return {k: c[k] for k in ("n", "base", "tuned", "delta", "ci_low", "ci_high", "p", "test")}


def check_arm(arm_dir: Path, base_dir: Path, name: str) -> None:
    """A prompting arm differs from the deployed baseline only in its examples."""
    arm, base = harness.read_meta(arm_dir), harness.read_meta(base_dir)
    a, b = arm["spec"], base["spec"]
    same = ("system_prompt", "chat_template_sha", "max_new_tokens", "limit")
    diffs = [k for k in same if a.get(k) != b.get(k)]
    primary = a["suites"][0] if a.get("suites") else None
    if primary and a["versions"].get(primary) != b["versions"].get(primary):
        diffs.append(f"suite {primary} version")
    if primary and (a.get("code") or {}).get(primary) != (b.get("code") or {}).get(primary):
        diffs.append(f"suite {primary} scoring")
    if arm.get("model") != base.get("model"):
        diffs.append("model")
    if diffs:
        raise UserError(f"the {name} base arm {paths.rel(arm_dir)} differs from the baseline in "
                        f"{', '.join(diffs)}; re-run `make baseline` then `make eval`")


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
    arms = {k: Path(v) for k, v in (meta.get("arms") or {}).items()}
    missing = [k for k, d in arms.items() if not (d / harness.META).is_file()]
    if missing:
        raise UserError(f"the base arm(s) {', '.join(missing)} of this evaluation are gone; "
                        "run `make baseline` then `make eval` again")
    result = decide(config, base_dir, tuned_dir, arms)
    (run.path / "gate.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    run.update_manifest(gate={k: result[k] for k in ("decision", "ship", "reasons", "alpha",
                                                     "min_gain", "rows", "base_arms",
                                                     "compared_arm")})
    tracking.record(run, gate=run.manifest()["gate"])  # (tracking) verdict on the MLflow run
    print_table(result, log)
    return result


def print_table(result: dict[str, Any], log: Any = print) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(title="tuned vs base (paired, same items)", box=box.SIMPLE_HEAVY)
    for col in ("suite", "metric", "role", "n", "base", "tuned", "delta", "CI / bound", "p",
                "power", "rule", "verdict"):
        table.add_column(col, justify="right" if col in ("n", "base", "tuned", "delta", "p",
                                                         "power") else "left")
    colours = {"pass": "green", "fail": "bold red", "info": "dim", "n/a": "yellow"}
    for r in result["rows"]:
        interval = (f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]" if r["role"] in
                    ("primary", "info") else f"{r['ci_low']:+.3f}")
        table.add_row(r["suite"], r["metric"], r["role"], str(r["n"]), f"{r['base']:.3f}",
                      f"{r['tuned']:.3f}", f"{r['delta']:+.3f}", interval,
                      "-" if r["p"] is None else f"{r['p']:.2g}",
                      "-" if r.get("power") is None else f"{r['power']:.2f}", r["rule"],
                      f"[{colours[r['verdict']]}]{r['verdict']}[/]")
    console = Console(width=160)
    arms = ", ".join(f"{k} {v:.3f}" for k, v in (result.get("base_arms") or {}).items())
    if arms:
        console.print(f"base arms on the primary metric: {arms}; compared with the best: "
                      f"{result['compared_arm']}")
    console.print(table)
    verdict = "[bold green]SHIP[/]" if result["ship"] else "[bold red]DO NOT SHIP[/]"
    why = "" if result["ship"] else ": " + "; ".join(result["reasons"])
    console.print(f"gate: {verdict}{why}")
