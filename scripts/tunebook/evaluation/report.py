"""One self-contained report per run: ``<run>/report.html`` (plots inlined as base64 PNG, no
external assets, so it can be mailed or attached to a PR) and its Markdown twin ``report.md``
(plots saved beside it as PNG files).

Sections: verdict, loss curves (train and validation, from the trainer state), base vs tuned
with paired intervals (the gate's table), best and worst items of the primary suite side by
side, the data-check summary (when the manifest has one), the resolved recipe and provenance.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

from tunebook import paths, tracking
from tunebook.compose import typed_line
from tunebook.evaluation import harness, kinds, ship_gate
from tunebook.evaluation.review import doc_prompt, doc_reference, output_of
from tunebook.rundir import RunDir

N_EXAMPLES = 3


# ------------------------------------------------------------------------------------ inputs


def trainer_log(run: RunDir) -> list[dict[str, Any]]:
    """The trainer's log history: output/trainer_state.json, else the newest checkpoint's."""
    out = run.output_dir
    candidates = [out / "trainer_state.json"]
    candidates += sorted(out.glob("checkpoint-*/trainer_state.json"),
                         key=lambda p: int(p.parent.name.split("-")[-1]), reverse=True)
    for file in candidates:
        if file.is_file():
            return json.loads(file.read_text(encoding="utf-8")).get("log_history", [])
    return []


def loss_series(history: list[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    train = [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
    val = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h and "step" in h]
    return {"train": train, "validation": val}


def gate_result(run: RunDir) -> dict[str, Any] | None:
    """The recorded gate decision, or a fresh one (not recorded) when eval exists."""
    file = run.path / "gate.json"
    if file.is_file():
        return json.loads(file.read_text(encoding="utf-8"))
    tuned = run.path / harness.EVAL_DIR
    if not (tuned / harness.META).is_file():
        return None
    meta = harness.read_meta(tuned)
    return ship_gate.decide(harness.run_config(run), Path(meta["baseline"]), tuned,
                            {k: Path(v) for k, v in (meta.get("arms") or {}).items()})


def examples(run: RunDir, suite: str, metric: str, n: int = N_EXAMPLES) -> dict[str, list[dict]]:
    """The n items the tuning helped most and the n it hurt most (by per-item metric change):
    only items that got better, and only items that got worse (none: an empty list)."""
    tuned_dir = run.path / harness.EVAL_DIR
    base_dir = Path(harness.read_meta(tuned_dir)["baseline"])
    base = {s["doc_id"]: s for s in harness.load_samples(base_dir, suite)}
    tuned = {s["doc_id"]: s for s in harness.load_samples(tuned_dir, suite)}
    items = []
    for doc_id in base.keys() & tuned.keys():
        try:
            b, t = float(base[doc_id][metric]), float(tuned[doc_id][metric])
        except (KeyError, TypeError, ValueError):
            continue
        doc = tuned[doc_id]["doc"]
        items.append({"doc_id": doc_id, "base_score": b, "tuned_score": t, "delta": t - b,
                      "prompt": doc_prompt(doc), "reference": doc_reference(doc),
                      "base": output_of(base[doc_id]), "tuned": output_of(tuned[doc_id])})
    items.sort(key=lambda x: (x["delta"], str(x["doc_id"])))
    better = [x for x in items if x["delta"] > 0]
    worse = [x for x in items if x["delta"] < 0]
    return {"best": list(reversed(better[-n:])), "worst": worse[:n]}


def confusion_matrices(run: RunDir, config: dict[str, Any]) -> dict[str, Any] | None:
    """Per-label confusion of base and tuned on the primary suite (classification tasks)."""
    scorer = kinds.Scorer.from_config(config)
    if scorer.kind != "classification":
        return None
    suite = config["eval"]["primary"]["suite"]
    tuned_dir = run.path / harness.EVAL_DIR
    base_dir = Path(harness.read_meta(tuned_dir)["baseline"])
    out: dict[str, Any] = {"labels": [*scorer.labels, kinds.INVALID]}
    for name, folder in (("base", base_dir), ("tuned", tuned_dir)):
        pairs = []
        for sample in harness.load_samples(folder, suite):
            gold, pred, _labels = scorer.score(sample["doc"], output_of(sample))["macro_f1"]
            pairs.append((gold, pred))
        out[name] = kinds.confusion(pairs, scorer.labels)
    return out


# ------------------------------------------------------------------------------------ plots


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def plot_loss(series: dict[str, list[tuple[float, float]]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    for name, style in (("train", "-o"), ("validation", "-s")):
        pts = series.get(name) or []
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=name, markersize=3)
    if not any(series.values()):
        ax.text(0.5, 0.5, "no trainer log found", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title("Training and validation loss")
    ax.grid(alpha=0.3)
    if any(series.values()):
        ax.legend()
    data = _png(fig)
    plt.close(fig)
    return data


def plot_deltas(rows: list[dict[str, Any]]) -> bytes:
    """Forest plot: tuned - base per suite/metric with its paired interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.45 * max(1, len(rows))))
    colours = {"pass": "tab:green", "fail": "tab:red", "info": "tab:gray"}
    for i, r in enumerate(reversed(rows)):
        ax.errorbar(r["delta"], i, xerr=[[r["delta"] - r["ci_low"]], [r["ci_high"] - r["delta"]]],
                    fmt="o", color=colours.get(r["verdict"], "tab:blue"), capsize=4)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{r['suite']}/{r['metric']} ({r['role']})" for r in reversed(rows)])
    ax.set_xlabel("tuned - base (paired interval)")
    ax.set_title("Change per suite")
    ax.grid(axis="x", alpha=0.3)
    data = _png(fig)
    plt.close(fig)
    return data


# ------------------------------------------------------------------------------------ render


def write_report(run: RunDir, *, log: Any = print) -> dict[str, Path]:
    """Write report.html and report.md (+ PNGs) into the run directory."""
    manifest = run.manifest()
    config = harness.run_config(run)
    resolved = (run.path / "resolved.yaml").read_text(encoding="utf-8")
    gate = gate_result(run)
    series = loss_series(trainer_log(run))
    images = {"loss": plot_loss(series)}
    ex: dict[str, list[dict]] = {"best": [], "worst": []}
    primary = config["eval"]["primary"]
    confusion = None
    if gate:
        images["deltas"] = plot_deltas(gate["rows"])
        ex = examples(run, primary["suite"], primary["metric"])
        confusion = confusion_matrices(run, config)
    for name, data in images.items():
        (run.path / f"report-{name}.png").write_bytes(data)
    ctx = {"run": run, "manifest": manifest, "config": config, "resolved": resolved,
           "gate": gate, "series": series, "examples": ex, "primary": primary,
           "confusion": confusion, "review": manifest.get("review")}
    html_file = run.path / "report.html"
    md_file = run.path / "report.md"
    html_file.write_text(render_html(ctx, images), encoding="utf-8")
    md_file.write_text(render_markdown(ctx, list(images)), encoding="utf-8")
    log(f"report: {paths.rel(html_file)} (and {md_file.name})")
    tracking.record(run, artifacts=True)  # (tracking) report, eval and gate files on the run
    return {"html": html_file, "markdown": md_file}


def _verdict(gate: dict[str, Any] | None) -> tuple[str, str]:
    if gate is None:
        return "not evaluated", "run `make eval` and `make gate` for a verdict"
    if gate["ship"]:
        return "SHIP", "the tuned model clearly improved and no guard regressed"
    return "DO NOT SHIP", "; ".join(gate["reasons"])


def _provenance(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    git = manifest.get("git") or {}
    hw = manifest.get("hardware") or {}
    pk = manifest.get("packages") or {}
    return [
        ("recipe", str(manifest.get("recipe"))), ("run", str(manifest.get("run_id"))),
        ("overrides", typed_line(manifest.get("overrides")) or "none"),
        ("created", str(manifest.get("created"))),
        ("git", f"{git.get('sha')} {'(dirty)' if git.get('dirty') else ''}".strip()),
        ("hardware", f"{hw.get('platform')}, {hw.get('cpu_count')} CPUs, {hw.get('memory_gb')} "
                     f"GB, GPUs: {', '.join(hw.get('gpus') or []) or 'none'}"),
        ("packages", ", ".join(f"{k} {v}" for k, v in pk.items() if v)),
        ("data files", ", ".join(f"{k} ({(v or '')[:12]})"
                                 for k, v in (manifest.get("data_files") or {}).items())),
    ]


def _data_check(manifest: dict[str, Any]) -> Any:
    for key in ("data_gate", "data_check", "data-check"):
        if key in manifest:
            return manifest[key]
    return None


def render_html(ctx: dict[str, Any], images: dict[str, bytes]) -> str:
    e = html.escape
    manifest, gate = ctx["manifest"], ctx["gate"]
    verdict, why = _verdict(gate)
    colour = {"SHIP": "#1a7f37", "DO NOT SHIP": "#cf222e"}.get(verdict, "#6e7781")

    def img(name: str, alt: str) -> str:
        if name not in images:
            return ""
        b64 = base64.b64encode(images[name]).decode("ascii")
        return f'<img alt="{e(alt)}" src="data:image/png;base64,{b64}">'

    rows = ""
    if gate:
        for r in gate["rows"]:
            p = "-" if r["p"] is None else f"{r['p']:.3g}"
            rows += (f"<tr class='{e(r['verdict']).replace('/', '')}'><td>{e(r['suite'])}</td>"
                     f"<td>{e(r['metric'])}</td><td>{e(r['role'])}</td><td>{r['n']}</td>"
                     f"<td>{r['base']:.3f}</td><td>{r['tuned']:.3f}</td>"
                     f"<td>{r['delta']:+.3f}</td><td>{e(_interval(r))}</td><td>{p}</td>"
                     f"<td>{e(_power(r))}</td><td>{e(r['test'])}</td><td>{e(r['rule'])}</td>"
                     f"<td>{e(r['verdict'])}</td></tr>")
    table = (f"<p>{e(_arms(gate))}</p><table><tr><th>suite</th><th>metric</th><th>role</th>"
             f"<th>n</th><th>base</th><th>tuned</th><th>delta</th><th>interval / bound</th>"
             f"<th>p</th><th>power (margin at 80%)</th><th>test</th><th>rule</th>"
             f"<th>verdict</th></tr>{rows}</table>" if gate else "<p>No evaluation yet.</p>")

    def ex_table(items: list[dict]) -> str:
        if not items:
            return "<p>none</p>"
        out = ("<table class='ex'><tr><th>item</th><th>prompt</th><th>reference</th>"
               "<th>base</th><th>tuned</th></tr>")
        for x in items:
            out += (f"<tr><td>{e(str(x['doc_id']))}<br>{x['base_score']:.2f} &rarr; "
                    f"{x['tuned_score']:.2f}</td><td><pre>{e(x['prompt'])}</pre></td>"
                    f"<td><pre>{e(x['reference'])}</pre></td><td><pre>{e(x['base'])}</pre></td>"
                    f"<td><pre>{e(x['tuned'])}</pre></td></tr>")
        return out + "</table>"

    dc = _data_check(manifest)
    if isinstance(dc, dict) and "summary" in dc:
        dc_html = (f"<p><b>{'passed' if dc.get('passed') else 'FAILED'}</b></p>"
                   f"<pre>{e(str(dc['summary']))}</pre>")
    elif dc is not None:
        dc_html = f"<pre>{e(json.dumps(dc, indent=2, default=str))}</pre>"
    else:
        dc_html = "<p>No data-check summary in the run manifest.</p>"
    prov = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in _provenance(manifest))
    primary = ctx["primary"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>tunebook report: {e(str(manifest.get('recipe')))} / {e(str(manifest.get('run_id')))}</title>
<style>
body{{font-family:system-ui,-apple-system,sans-serif;margin:2em auto;max-width:1200px;
color:#1f2328}}
h1{{font-size:1.6em}} h2{{border-bottom:1px solid #d0d7de;padding-bottom:.2em;margin-top:1.6em}}
.verdict{{display:inline-block;padding:.3em .8em;border-radius:6px;color:#fff;
background:{colour};font-weight:700}}
table{{border-collapse:collapse;margin:.5em 0}} td,th{{border:1px solid #d0d7de;padding:.3em .5em;
text-align:left;vertical-align:top}} tr.fail td{{background:#ffebe9}}
tr.pass td{{background:#dafbe1}} tr.na td{{background:#fff8c5}}
tr.info td{{color:#57606a}} pre{{white-space:pre-wrap;margin:0;max-width:28em;font-size:.85em}}
img{{max-width:100%;border:1px solid #d0d7de;margin:.5em 0}}
</style></head><body>
<h1>{e(str(manifest.get('recipe')))} &mdash; run {e(str(manifest.get('run_id')))}</h1>
<p><span class="verdict" id="verdict">{e(verdict)}</span> {e(why)}</p>
<h2>Loss curves</h2>
{img('loss', 'training and validation loss')}
<h2>Base vs tuned (paired, same held-out items)</h2>
<p>Primary: <b>{e(primary['suite'])}/{e(primary['metric'])}</b>.
{e((gate or {}).get('test', ''))}</p>
{table}
{img('deltas', 'change per suite with paired intervals')}
{_confusion_html(ctx.get('confusion'))}
<h2>Best items (tuning helped most)</h2>
{ex_table(ctx['examples']['best'])}
<h2>Worst items (tuning hurt most)</h2>
{ex_table(ctx['examples']['worst']) if ctx['examples']['worst'] or not gate else
 '<p>No item got worse.</p>'}
<h2>Blind human review</h2>
<pre>{e(chr(10).join(_review_lines(ctx.get('review'))))}</pre>
<h2>Data check</h2>
{dc_html}
<h2>Provenance</h2>
<table>{prov}</table>
<h2>Resolved recipe</h2>
<details><summary>resolved.yaml</summary><pre>{e(ctx['resolved'])}</pre></details>
</body></html>
"""


def _interval(r: dict[str, Any]) -> str:
    """The primary/info rows' two-sided interval; a guard's one-sided bound and its margin."""
    if r["role"] in ("primary", "info"):
        return f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"
    margin = r.get("margin")
    return f"{r['ci_low']:+.3f} (>= {-margin:+.3f})" if margin is not None else \
        f"{r['ci_low']:+.3f}"


def _power(r: dict[str, Any]) -> str:
    if r.get("power") is None:
        return "-"
    return f"{r['power']:.2f} ({r['min_margin']:.3f})" if r.get("min_margin") is not None \
        else f"{r['power']:.2f}"


def _arms(gate: dict[str, Any]) -> str:
    arms = gate.get("base_arms") or {}
    if not arms:
        return ""
    shown = ", ".join(f"{k} {v:.3f}" for k, v in arms.items())
    return (f"Base prompting arms on the primary metric: {shown}; the tuned model is compared "
            f"with the best, {gate['compared_arm']}.")


def _review_lines(review: dict[str, Any] | None) -> list[str]:
    if not review:
        return ["No scored blind review (`make review`, then `make review-score`)."]
    out = []
    for rater, r in review.get("raters", {}).items():
        rate = "n/a" if r["preference_rate"] is None else f"{r['preference_rate']:.1%}"
        out.append(f"{rater}: tuned preferred {r['tuned_preferred']}, base "
                   f"{r['base_preferred']}, ties {r['ties']}: preference {rate} (binomial "
                   f"p={r['p_value']:.3g})")
        for name, means in (r.get("rubric") or {}).items():
            out.append(f"  {name}: base {means['base']:.2f}, tuned {means['tuned']:.2f} (1-5)")
    if "agreement" in review:
        a = review["agreement"]
        out.append(f"agreement on {a['items']} items: Cohen's kappa {a['cohen_kappa']:.3f}")
    out.append(f"significant preference for the tuned model: "
               f"{'yes' if review.get('significant') else 'no'}")
    return out


def _confusion_html(confusion: dict[str, Any] | None) -> str:
    if not confusion:
        return ""
    e = html.escape
    labels = confusion["labels"]
    out = "<h2>Confusion (rows: reference label, columns: predicted)</h2>"
    for name in ("base", "tuned"):
        head = "".join(f"<th>{e(x)}</th>" for x in labels)
        body = "".join(f"<tr><th>{e(gold)}</th>" + "".join(f"<td>{n}</td>" for n in row)
                       + "</tr>" for gold, row in zip(labels, confusion[name], strict=False))
        out += f"<h3>{name}</h3><table><tr><th></th>{head}</tr>{body}</table>"
    return out


def _confusion_markdown(confusion: dict[str, Any] | None) -> list[str]:
    if not confusion:
        return []
    labels = confusion["labels"]
    lines = ["", "## Confusion (rows: reference label, columns: predicted)"]
    for name in ("base", "tuned"):
        lines += ["", f"### {name}", "", "| | " + " | ".join(labels) + " |",
                  "|---|" + "---:|" * len(labels)]
        lines += [f"| {gold} | " + " | ".join(str(n) for n in row) + " |"
                  for gold, row in zip(labels, confusion[name], strict=False)]
    return lines


def render_markdown(ctx: dict[str, Any], image_names: list[str]) -> str:
    manifest, gate = ctx["manifest"], ctx["gate"]
    verdict, why = _verdict(gate)
    lines = [f"# {manifest.get('recipe')} — run {manifest.get('run_id')}", "",
             f"**Verdict: {verdict}** — {why}", "", "## Loss curves", "",
             "![training and validation loss](report-loss.png)", ""]
    lines += ["## Base vs tuned (paired, same held-out items)", ""]
    if gate:
        lines += [gate.get("test", ""), "", _arms(gate), "",
                  "| suite | metric | role | n | base | tuned | delta | interval / bound | p | "
                  "power (margin at 80%) | rule | verdict |",
                  "|---|---|---|---:|---:|---:|---:|---|---:|---|---|---|"]
        for r in gate["rows"]:
            p = "-" if r["p"] is None else f"{r['p']:.3g}"
            lines.append(f"| {r['suite']} | {r['metric']} | {r['role']} | {r['n']} | "
                         f"{r['base']:.3f} | {r['tuned']:.3f} | {r['delta']:+.3f} | "
                         f"{_interval(r)} | {p} | {_power(r)} | {_cell(r['rule'])} | "
                         f"{r['verdict']} |")
        if "deltas" in image_names:
            lines += ["", "![change per suite](report-deltas.png)"]
        lines += _confusion_markdown(ctx.get("confusion"))
    else:
        lines.append("No evaluation yet.")
    for title, key in (("Best items (tuning helped most)", "best"),
                       ("Worst items (tuning hurt most)", "worst")):
        lines += ["", f"## {title}", ""]
        for x in ctx["examples"][key]:
            lines += [f"### item {x['doc_id']}: {x['base_score']:.2f} → {x['tuned_score']:.2f}",
                      "", "Prompt:", "", _quote(x["prompt"]), "", "Reference:", "",
                      _quote(x["reference"]), "", "| base | tuned |", "|---|---|",
                      f"| {_cell(x['base'])} | {_cell(x['tuned'])} |", ""]
        if not ctx["examples"][key]:
            lines.append("No item got worse." if key == "worst" and gate else "none")
    lines += ["", "## Blind human review", "", *_review_lines(ctx.get("review"))]
    dc = _data_check(manifest)
    lines += ["", "## Data check", ""]
    if isinstance(dc, dict) and "summary" in dc:
        lines += [f"**{'passed' if dc.get('passed') else 'FAILED'}**: {dc['summary']}"]
    elif dc is not None:
        lines += ["```json", json.dumps(dc, indent=2, default=str), "```"]
    else:
        lines += ["No data-check summary in the run manifest."]
    lines += ["", "## Provenance", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {_cell(v)} |" for k, v in _provenance(manifest)]
    lines += ["", "## Resolved recipe", "", "```yaml", ctx["resolved"].rstrip(), "```", ""]
    return "\n".join(lines)


def _quote(text: str) -> str:
    return "\n".join("> " + line for line in (text or "(empty)").splitlines()) or "> (empty)"


def _cell(text: str) -> str:
    return (text or "").replace("|", "\\|").replace("\n", "<br>") or "(empty)"
