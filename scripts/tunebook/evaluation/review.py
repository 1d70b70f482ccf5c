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
from pathlib import Path
from typing import Any

from tunebook import paths
from tunebook.errors import UserError
from tunebook.evaluation import harness, kinds
from tunebook.rundir import RunDir

SEED = 20260101
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


def build_sheet(run: RunDir, n: int = 100, seed: int = SEED) -> dict[str, Path]:
    """Write the blind sheet (CSV + HTML) and the hidden key for ``run``'s primary suite."""
    tuned_dir = run.path / harness.EVAL_DIR
    if not (tuned_dir / harness.META).is_file():
        raise UserError(f"RUN={paths.rel(run.path)} has no evaluation; run `make eval` first")
    if n <= 0:
        raise UserError(f"--n {n}: expected a positive number of items")
    meta = harness.read_meta(tuned_dir)
    base_dir = Path(meta["baseline"])
    suite = harness.run_config(run)["eval"]["primary"]["suite"]
    base = {s["doc_id"]: s for s in harness.load_samples(base_dir, suite)}
    tuned = {s["doc_id"]: s for s in harness.load_samples(tuned_dir, suite)}
    ids = sorted(set(base) & set(tuned), key=lambda x: int(x) if str(x).isdigit() else str(x))
    rng = random.Random(seed)
    chosen = rng.sample(ids, min(n, len(ids)))
    rows, key = [], []
    for i, doc_id in enumerate(chosen, 1):
        tuned_side = rng.choice("AB")
        b, t = output_of(base[doc_id]), output_of(tuned[doc_id])
        a_text, b_text = (t, b) if tuned_side == "A" else (b, t)
        doc = tuned[doc_id]["doc"]
        rows.append({"item": i, "prompt": doc_prompt(doc), "reference": doc_reference(doc),
                     "output_a": a_text, "output_b": b_text, "rater1": "", "rater2": "",
                     "notes": ""})
        key.append({"item": i, "doc_id": doc_id, "tuned": tuned_side})
    out = run.path / "review"
    out.mkdir(parents=True, exist_ok=True)
    sheet = out / "sheet.csv"
    with sheet.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["item"])
        writer.writeheader()
        writer.writerows(rows)
    (out / "sheet.html").write_text(_sheet_html(rows, suite), encoding="utf-8")
    (out / "key.json").write_text(json.dumps({"suite": suite, "seed": seed, "run": str(run.path),
                                              "items": key}, indent=2) + "\n", encoding="utf-8")
    return {"csv": sheet, "html": out / "sheet.html", "key": out / "key.json"}


def _sheet_html(rows: list[dict[str, Any]], suite: str) -> str:
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
(<code>rater1</code> or <code>rater2</code>) of <code>sheet.csv</code>. The order is random;
do not open <code>key.json</code>.</p>
<table><tr><th>#</th><th>prompt</th><th>A</th><th>B</th><th>reference</th></tr>
{body}
</table></body></html>
"""


def score_sheet(sheet: Path, key_file: Path | None = None) -> dict[str, Any]:
    """Preference rate for the tuned model per rater, binomial p, and Cohen's kappa."""
    from scipy.stats import binomtest
    from sklearn.metrics import cohen_kappa_score

    if not sheet.is_file():
        raise UserError(f"--sheet {sheet}: no such file; `make review` writes "
                        "runs/<recipe>/<run>/review/sheet.csv")
    key_file = key_file or sheet.with_name("key.json")
    if not key_file.is_file():
        raise UserError(f"{paths.rel(key_file)}: the hidden key is missing; it is written beside "
                        "the sheet by `make review`")
    key = {str(k["item"]): k["tuned"] for k in json.loads(key_file.read_text("utf-8"))["items"]}
    with sheet.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    judged: dict[str, dict[str, str]] = {r: {} for r in RATERS}
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
    result: dict[str, Any] = {"sheet": str(sheet), "raters": {}}
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
    both = sorted(set(judged["rater1"]) & set(judged["rater2"]))
    if both:
        a = [judged["rater1"][i] for i in both]
        b = [judged["rater2"][i] for i in both]
        kappa = cohen_kappa_score(a, b) if len(set(a) | set(b)) > 1 else 1.0
        result["agreement"] = {"items": len(both), "cohen_kappa": float(kappa),
                               "raw": sum(x == y for x, y in zip(a, b, strict=True)) / len(both)}
    sheet.with_name("review-score.json").write_text(json.dumps(result, indent=2) + "\n",
                                                    encoding="utf-8")
    return result
