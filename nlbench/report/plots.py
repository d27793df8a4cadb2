"""PNG plots of the reports, drawn with matplotlib's object API (no pyplot, no display: Agg only).

``save_png`` writes a figure atomically; ``accuracy_vs_gflops`` is one table's rows as top-1 (95% CI
error bars) against GFLOPs; ``learning_curves`` one table's validation top-1 through training (mean over
seeds, min-max band); ``gain_vs_cost`` the summary: each non-local variant's paired gain against the
GFLOPs it adds.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from nlbench.io import atomic_file


def save_png(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Render ``fig`` to PNG at ``path``, atomically."""
    path = Path(path)
    with atomic_file(path) as f:
        fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight")
    return path


def accuracy_vs_gflops(summary: pd.DataFrame, title: str, path: str | Path, baseline: str | None = None,
                       label: str = "top-1") -> Path | None:
    """One point per row with results: mean ``label`` (what ``top1`` holds: the profile's score) against
    GFLOPs, error bars the 95% CI (none for one seed).

    Returns None (and writes nothing) when no row has both a top-1 and a GFLOPs figure.
    """
    rows = summary[summary["top1_mean"].notna() & summary["gflops"].notna()]
    if rows.empty:
        return None
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    errors = rows["top1_ci95"].fillna(0.0)
    ax.errorbar(rows["gflops"], rows["top1_mean"], yerr=errors, fmt="o", capsize=3, color="tab:blue",
                ecolor="tab:gray", label="ours (mean ± 95% CI)")
    for _, r in rows.iterrows():
        ax.annotate(str(r["row"]), (r["gflops"], r["top1_mean"]), textcoords="offset points", xytext=(5, 4),
                    fontsize=8, color="tab:red" if r["row"] == baseline else "black")
    ax.set_xlabel("GFLOPs (multiply-adds, one clip)")
    ax.set_ylabel(f"{label} (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    if rows["gflops"].max() / max(rows["gflops"].min(), 1e-12) > 20:
        ax.set_xscale("log")
    spread = rows["gflops"].max() - rows["gflops"].min()
    if not spread or not math.isfinite(spread):  # every row at the same cost: still a readable axis
        g = float(rows["gflops"].iloc[0])
        ax.set_xlim(g * 0.9, g * 1.1 if g else 1.0)
    ax.legend(fontsize=8, loc="lower right")
    return save_png(fig, path)


def curve_bands(runs: list[list[dict]], key: str = "val_top1") -> pd.DataFrame:
    """One row's curves (one per seed) -> per step: mean, min and max of the validation score ``key`` over the
    seeds that reached it, and how many did (columns step, mean, low, high, n)."""
    points = pd.DataFrame([p for run in runs for p in run if p.get(key) is not None], columns=["step", key])
    points[key] = pd.to_numeric(points[key], errors="coerce")
    by_step = points.dropna().groupby("step")[key]
    return pd.DataFrame({"mean": by_step.mean(), "low": by_step.min(), "high": by_step.max(),
                         "n": by_step.size()}).reset_index()


def learning_curves(curves: dict[str, list[list[dict]]], title: str, path: str | Path, key: str = "val_top1",
                    label: str = "validation top-1") -> Path | None:
    """``curves``: row -> one ``curve`` per seed (``[{"step", "epoch", "val_top1", ...}, ...]``). Per row the
    mean over seeds of the validation score ``key`` at each step, and a band from the lowest to the highest
    seed. None (nothing written) when no row has a curve."""
    series = {row: (curve_bands(runs, key), len(runs)) for row, runs in curves.items()}
    series = {row: v for row, v in series.items() if len(v[0])}
    if not series:
        return None
    fig = Figure(figsize=(7.2, 4.6))
    ax = fig.add_subplot()
    for i, (row, (bands, n)) in enumerate(series.items()):
        color = f"C{i % 10}"
        ax.plot(bands["step"], bands["mean"], color=color, label=f"{row} ({n} seeds)", linewidth=1.4)
        ax.fill_between(bands["step"], bands["low"], bands["high"], color=color, alpha=0.15, linewidth=0)
    ax.set_xlabel("training step")
    ax.set_ylabel(f"{label} (%)")
    ax.set_title(f"{title}\nmean over seeds; band: min-max over seeds", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return save_png(fig, path)


def gain_vs_cost(gains: pd.DataFrame, path: str | Path, label: str = "top-1") -> Path | None:
    """One point per non-local variant: paired ``label`` gain over its baseline (95% CI error bars; none for one
    pair) against the GFLOPs it adds, each point numbered by its line in ``gains`` (1-based: the summary
    table's ``#``; names would overlap). ``gains`` columns: gain, gain_ci95, added_gflops."""
    rows = gains[gains["gain"].notna() & gains["added_gflops"].notna()]
    if rows.empty:
        return None
    fig = Figure(figsize=(7.6, 5.0))
    ax = fig.add_subplot()
    ax.errorbar(rows["added_gflops"], rows["gain"], yerr=rows["gain_ci95"].fillna(0.0), fmt="o", capsize=3,
                color="tab:blue", ecolor="tab:gray", label="paired gain (mean ± 95% CI over seeds)")
    for number, r in rows.iterrows():
        ax.annotate(str(number + 1), (r["added_gflops"], r["gain"]), textcoords="offset points", xytext=(4, 3),
                    fontsize=7)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("GFLOPs added over the baseline (multiply-adds, one clip)")
    ax.set_ylabel(f"{label} gain over the baseline (points)")
    ax.set_title("What a non-local block buys: paired gain vs added cost (numbers: the summary table's #)",
                 fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return save_png(fig, path)


__all__ = ["accuracy_vs_gflops", "curve_bands", "gain_vs_cost", "learning_curves", "save_png"]
