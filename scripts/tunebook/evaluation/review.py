"""Blind human review: base and tuned outputs side by side as A and B, in seeded random order.

``tunebook review`` writes ``<run>/review/sheet.csv`` and ``sheet.html`` (what raters see) and
``key.json`` (which side is the tuned model; keep it from the raters). Raters write ``A``,
``B`` or ``tie`` in the ``rater1`` (and optionally ``rater2``) column of the CSV.
``tunebook review-score --sheet sheet.csv`` then reports, per rater, how often the tuned
output was preferred (ties excluded) with a two-sided binomial test against 50 %
(``scipy.stats.binomtest``) and, with two raters, their agreement as Cohen's kappa
(``sklearn.metrics.cohen_kappa_score``).
"""

from __future__ import annotations

import csv
import html
import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

from tunebook import paths, tracking
from tunebook.errors import UserError
from tunebook.evaluation import harness, kinds
from tunebook.rundir import RunDir

SEED = 20260101
ALPHA = 0.05  # a preference counts when the binomial test says p < ALPHA
RATERS = ("rater1", "rater2")
CHOICES = {"a": "A", "b": "B", "tie": "tie", "=": "tie"}


def _is_task_row(doc: dict[str, Any]) -> bool:
    return isinstance(doc.get("messages"), list) or isinstance(doc.get("chosen"), dict | str)


def doc_prompt(doc: dict[str, Any]) -> str:
    """What the model was asked, in words a rater can read."""
    if _is_task_row(doc):
        return kinds.doc_to_text(doc)
    for key in ("request", "text", "instruction", "question"):
        if isinstance(doc.get(key), str):
            return doc[key]
    return json.dumps(doc, ensure_ascii=False)


def doc_reference(doc: dict[str, Any]) -> str:
    return kinds.doc_to_target(doc) if _is_task_row(doc) else ""


def output_of(sample: dict[str, Any]) -> str:
    resp = sample.get("filtered_resps")
    while isinstance(resp, list) and resp:
        resp = resp[0]
    return resp if isinstance(resp, str) else str(resp)


def strata(config: dict[str, Any], base: dict[Any, dict], tuned: dict[Any, dict],
           ids: list[Any]) -> dict[str, list[Any]]:
    """Items grouped so a sample covers them all: by reference label for classification, else by
    the primary metric's outcome (both right, only tuned, only base, neither; or better, same,
    worse for a continuous metric)."""
    scorer = kinds.Scorer.from_config(config)
    metric = config["eval"]["primary"]["metric"]
    out: dict[str, list[Any]] = defaultdict(list)
    for doc_id in ids:
        if scorer.kind == "classification":
            gold = kinds.normalise_label(kinds.doc_to_target(tuned[doc_id]["doc"]))
            out[f"label {gold}"].append(doc_id)
            continue
        b, t = float(base[doc_id][metric]), float(tuned[doc_id][metric])
        if {b, t} <= {0.0, 1.0}:
            name = {(1, 1): "both right", (0, 1): "only tuned", (1, 0): "only base",
                    (0, 0): "neither"}[(int(b), int(t))]
        else:
            name = "tuned better" if t > b else "tuned worse" if t < b else "same"
        out[name].append(doc_id)
    return dict(sorted(out.items()))


def stratified_sample(groups: dict[str, list[Any]], n: int, rng: random.Random) -> list[Any]:
    """``n`` items spread over the groups in proportion to their sizes (largest remainder;
    every group gets at least one while there are items to give), in random order."""
    total = sum(len(g) for g in groups.values())
    if n >= total:
        chosen = [i for g in groups.values() for i in g]
    else:
        quota = {k: n * len(g) / total for k, g in groups.items()}
        counts = {k: max(1, int(q)) if groups[k] else 0 for k, q in quota.items()}
        while sum(counts.values()) > n:  # the min-1 rule can overshoot: trim the groups
            over = [x for x in counts if counts[x] > 1] or list(counts)  # that keep one
            k = max(over, key=lambda x: (counts[x] - quota[x], counts[x]))
            counts[k] -= 1
        for k in sorted(quota, key=lambda x: quota[x] - int(quota[x]), reverse=True):
            if sum(counts.values()) >= n:
                break
            if counts[k] < len(groups[k]):
                counts[k] += 1
        chosen = [i for k, g in groups.items() for i in rng.sample(g, counts[k])]
    rng.shuffle(chosen)
    return chosen


def build_sheet(run: RunDir, n: int | None = None, seed: int = SEED) -> dict[str, Any]:
    """Write the blind sheet (CSV + HTML) and the hidden key for ``run``'s primary suite: a
    stratified sample of ``n`` items (default ``eval.review.items``), base and tuned outputs as
    A and B in seeded random order, the A/B choice and 1-5 rubric columns for each output."""
    tuned_dir = run.path / harness.EVAL_DIR
    if not (tuned_dir / harness.META).is_file():
        raise UserError(f"RUN={paths.rel(run.path)} has no evaluation; run `make eval` first")
    config = harness.run_config(run)
    policy = config["eval"].get("review") or {}
    n = int(n if n is not None else policy.get("items", 100))
    if n <= 0:
        raise UserError(f"--n {n}: expected a positive number of items")
    rubric = list(policy.get("rubric") or [])
    meta = harness.read_meta(tuned_dir)
    base_dir = Path(meta["baseline"])
    suite = config["eval"]["primary"]["suite"]
    base = {s["doc_id"]: s for s in harness.load_samples(base_dir, suite)}
    tuned = {s["doc_id"]: s for s in harness.load_samples(tuned_dir, suite)}
    ids = sorted(set(base) & set(tuned), key=lambda x: int(x) if str(x).isdigit() else str(x))
    rng = random.Random(seed)
    groups = strata(config, base, tuned, ids)
    chosen = stratified_sample(groups, n, rng)
    rows, key = [], []
    for i, doc_id in enumerate(chosen, 1):
        tuned_side = rng.choice("AB")
        b, t = output_of(base[doc_id]), output_of(tuned[doc_id])
        a_text, b_text = (t, b) if tuned_side == "A" else (b, t)
        doc = tuned[doc_id]["doc"]
        rows.append({"item": i, "prompt": doc_prompt(doc), "reference": doc_reference(doc),
                     "output_a": a_text, "output_b": b_text, "rater1": "", "rater2": "",
                     **{f"{name}_{side}": "" for name in rubric for side in "ab"},
                     "notes": ""})
        key.append({"item": i, "doc_id": doc_id, "tuned": tuned_side})
    out = run.path / "review"
    out.mkdir(parents=True, exist_ok=True)
    sheet = out / "sheet.csv"
    with sheet.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["item"])
        writer.writeheader()
        writer.writerows(rows)
    (out / "sheet.html").write_text(_sheet_html(rows, suite, rubric), encoding="utf-8")
    sizes = {k: sum(1 for x in chosen if x in set(g)) for k, g in groups.items()}
    (out / "key.json").write_text(json.dumps({
        "suite": suite, "seed": seed, "run": str(run.path), "asked": n,
        "available": len(ids), "strata": sizes, "rubric": rubric, "items": key},
        indent=2) + "\n", encoding="utf-8")
    return {"csv": sheet, "html": out / "sheet.html", "key": out / "key.json", "asked": n,
            "used": len(chosen), "available": len(ids), "strata": sizes}


def _sheet_html(rows: list[dict[str, Any]], suite: str, rubric: list[str]) -> str:
    e = html.escape
    body = "\n".join(
        f"<tr><td>{r['item']}</td><td><pre>{e(r['prompt'])}</pre></td>"
        f"<td><pre>{e(r['output_a'])}</pre></td><td><pre>{e(r['output_b'])}</pre></td>"
        f"<td><pre>{e(r['reference'])}</pre></td></tr>" for r in rows)
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Blind review: {e(suite)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.4em;vertical-align:top}}pre{{white-space:pre-wrap;margin:0;
max-width:32em}}</style></head><body>
<h1>Blind review: {e(suite)}</h1>
<p>For each item, decide which reply is better, A or B (or tie), and write it in your column
(<code>rater1</code> or <code>rater2</code>) of <code>sheet.csv</code>. {_rubric_text(rubric)}
The order is random; do not open <code>key.json</code>.</p>
<table><tr><th>#</th><th>prompt</th><th>A</th><th>B</th><th>reference</th></tr>
{body}
</table></body></html>
"""


def _rubric_text(rubric: list[str]) -> str:
    if not rubric:
        return ""
    cols = ", ".join(f"<code>{html.escape(n)}_a</code>/<code>{html.escape(n)}_b</code>"
                     for n in rubric)
    return f"Then rate each reply from 1 (poor) to 5 (excellent) in the columns {cols}."


def score_sheet(sheet: Path, key_file: Path | None = None,
                alpha: float = ALPHA) -> dict[str, Any]:
    """Per rater: how often the tuned output was preferred (ties excluded) with a two-sided
    binomial test against 50 % (``scipy.stats.binomtest``); the rubric's mean 1-5 ratings of
    base and tuned; with two raters, Cohen's kappa. ``significant``: every rater preferred the
    tuned model, each at p < ``alpha``. Written beside the sheet, into the run's manifest and
    onto its MLflow run."""
    from scipy.stats import binomtest
    from sklearn.metrics import cohen_kappa_score

    if not sheet.is_file():
        raise UserError(f"--sheet {sheet}: no such file; `make review` writes "
                        "runs/<recipe>/<run>/review/sheet.csv")
    key_file = key_file or sheet.with_name("key.json")
    if not key_file.is_file():
        raise UserError(f"{paths.rel(key_file)}: the hidden key is missing; it is written beside "
                        "the sheet by `make review`")
    hidden = json.loads(key_file.read_text("utf-8"))
    key = {str(k["item"]): k["tuned"] for k in hidden["items"]}
    rubric = list(hidden.get("rubric") or [])
    with sheet.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    judged: dict[str, dict[str, str]] = {r: {} for r in RATERS}
    ratings: dict[str, dict[str, list[int]]] = {n: {"base": [], "tuned": []} for n in rubric}
    for line, row in enumerate(rows, 2):
        item = str(row.get("item", "")).strip()
        if item not in key:
            raise UserError(f"{paths.rel(sheet)}:{line}: item {item!r} is not in the key")
        for rater in RATERS:
            raw = (row.get(rater) or "").strip().lower()
            if not raw:
                continue
            if raw not in CHOICES:
                raise UserError(f"{paths.rel(sheet)}:{line}: {rater}={row.get(rater)!r}; "
                                "expected A, B or tie")
            choice = CHOICES[raw]
            judged[rater][item] = ("tie" if choice == "tie"
                                   else "tuned" if choice == key[item] else "base")
        for name in rubric:
            for side in "ab":
                raw = (row.get(f"{name}_{side}") or "").strip()
                if not raw:
                    continue
                if raw not in {"1", "2", "3", "4", "5"}:
                    raise UserError(f"{paths.rel(sheet)}:{line}: {name}_{side}={raw!r}; "
                                    "expected a rating from 1 to 5 (or blank)")
                who = "tuned" if side.upper() == key[item] else "base"
                ratings[name][who].append(int(raw))
    result: dict[str, Any] = {"sheet": str(sheet), "raters": {}, "alpha": alpha,
                              "items": len(rows), "asked": hidden.get("asked"),
                              "available": hidden.get("available")}
    for rater, votes in judged.items():
        if not votes:
            continue
        wins = sum(v == "tuned" for v in votes.values())
        losses = sum(v == "base" for v in votes.values())
        ties = sum(v == "tie" for v in votes.values())
        decided = wins + losses
        p = float(binomtest(wins, decided, 0.5).pvalue) if decided else 1.0
        result["raters"][rater] = {"judged": len(votes), "tuned_preferred": wins,
                                   "base_preferred": losses, "ties": ties,
                                   "preference_rate": wins / decided if decided else None,
                                   "p_value": p}
    if not result["raters"]:
        raise UserError(f"{paths.rel(sheet)}: no judgments yet; fill the rater1 column with A, "
                        "B or tie")
    result["rubric"] = {name: {who: (sum(v) / len(v) if v else None) for who, v in sides.items()}
                        for name, sides in ratings.items()}
    result["significant"] = all((r["preference_rate"] or 0) > 0.5 and r["p_value"] < alpha
                                for r in result["raters"].values())
    both = sorted(set(judged["rater1"]) & set(judged["rater2"]))
    if both:
        a = [judged["rater1"][i] for i in both]
        b = [judged["rater2"][i] for i in both]
        kappa = cohen_kappa_score(a, b) if len(set(a) | set(b)) > 1 else 1.0
        result["agreement"] = {"items": len(both), "cohen_kappa": float(kappa),
                               "raw": sum(x == y for x, y in zip(a, b, strict=True)) / len(both)}
    sheet.with_name("review-score.json").write_text(json.dumps(result, indent=2) + "\n",
                                                    encoding="utf-8")
    run_path = Path(hidden.get("run", ""))
    if (run_path / "manifest.json").is_file():
        run = RunDir.open(run_path)
        run.update_manifest(review={k: result[k] for k in ("raters", "rubric", "significant",
                                                           "items", "alpha")
                                    } | ({"agreement": result["agreement"]}
                                         if "agreement" in result else {}))
        flat = {f"review/{rater}/{k}": v for rater, r in result["raters"].items()
                for k, v in r.items() if isinstance(v, int | float)}
        flat["review/significant"] = float(result["significant"])
        tracking.record(run, metrics=flat)
    return result
