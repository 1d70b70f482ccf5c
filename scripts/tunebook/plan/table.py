"""``make plan``'s output: the memory, suggestion and time tables of a ``Plan``, printed with
rich."""

from __future__ import annotations

import math
import sys

from tunebook.plan.estimate import Plan
from tunebook.plan.units import human as _n


def print_plan(plan: Plan, overrides: str = "") -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(width=max(120, Console().width))
    title = (f"{plan.recipe}{' ' + overrides if overrides else ''} on {plan.gpus} x {plan.gpu} "
             f"({plan.gpu_name}, {plan.capacity_gb:g} GiB)")
    t = Table(title=f"memory per GPU: {title}", title_justify="left")
    t.add_column("term")
    t.add_column("GiB", justify="right")
    t.add_column("how")
    for term in plan.terms:
        t.add_row(term.name, f"{term.gb:.2f}", term.detail)
    t.add_row("[bold]peak[/bold]", f"[bold]{plan.peak_gb:.2f}[/bold]",
              f"{_n(plan.params_b * 1e9)} params, {_n(plan.trainable_params)} trainable")
    con.print(t)
    con.print(f"sharding: {plan.sharding}")
    verdict = ("[green]fits[/green]" if plan.fits else "[red]does not fit[/red]")
    con.print(f"verdict: {verdict}: peak {plan.peak_gb:.1f} GiB of {plan.capacity_gb:g} GiB "
              f"(usable {plan.usable_gb:.1f}, headroom {plan.headroom_gb:.1f} GiB)")
    if plan.suggestions:
        st = Table(title="to make it fit (cheapest change first)", title_justify="left")
        for col in ("#", "change", "OVERRIDES / option", "new peak GiB", "fits", "cost"):
            st.add_column(col, overflow="fold", justify="right" if col == "new peak GiB" else
                          "left")
        for i, sg in enumerate(plan.suggestions, 1):
            st.add_row(str(i), sg.change, sg.overrides, f"{sg.peak_gb:.1f}",
                       "yes" if sg.fits else "no", sg.cost)
        con.print(st)
    tc = plan.time
    if tc:
        tt = Table(title="time and cost", title_justify="left")
        tt.add_column("quantity")
        tt.add_column("value", justify="right")
        tt.add_column("how")
        tt.add_row("FLOPs per token", _n(tc.flops_per_token), tc.detail)
        if tc.tokens_per_epoch is None:
            tt.add_row("tokens per epoch", "unknown", tc.tokens_source)
        else:
            tt.add_row("tokens per epoch", f"{tc.tokens_per_epoch:,}", tc.tokens_source)
            if tc.packing_efficiency is not None:
                tt.add_row("packing efficiency", f"{tc.packing_efficiency:.1%}",
                           f"useful / processed tokens; {tc.batching}")
                tt.add_row("processed tokens per epoch", f"{tc.processed_tokens_per_epoch:,.0f}",
                           f"padding included; {tc.sequences:,} sequences"
                           + (f", {tc.dropped:,} longer than sequence_len dropped"
                              if tc.dropped else ""))
                capped = tc.total_steps < math.ceil(tc.steps_per_epoch * tc.epochs)
                tt.add_row("optimizer steps", f"{tc.total_steps:,}",
                           f"{tc.steps_per_epoch:,} per epoch x {tc.epochs:g} epochs"
                           f"{', capped by max_steps' if capped else ''}; "
                           f"{tc.tokens_per_step:,.0f} processed tokens per step")
            tt.add_row("evaluation FLOPs", f"{tc.eval_flops:.3g}", tc.eval_detail)
            tt.add_row("total FLOPs", f"{tc.flops_total:.3g}",
                       "processed tokens x FLOPs/token over the run + evaluation")
            tt.add_row("GPU hours", f"{tc.hours * plan.gpus:.3g}",
                       f"{plan.gpus} x {plan.gpu} at MFU {tc.mfu:g} (--mfu), "
                       f"wall {_hms(tc.hours)}")
            tt.add_row("cost", f"${tc.cost_usd:,.2f}", f"${tc.price_per_hour:.2f}/GPU-hour "
                       "(--price); excludes checkpoint saves and start-up")
        con.print(tt)
    con.print("assumptions:")
    for a in plan.assumptions:
        con.print(f"  - {a}", highlight=False)
    sys.stdout.flush()


def _hms(hours: float) -> str:
    if hours < 1 / 60:
        return f"{hours * 3600:.0f} s"
    if hours < 1:
        return f"{hours * 60:.0f} min"
    return f"{math.floor(hours)} h {round((hours % 1) * 60):02d} min"
