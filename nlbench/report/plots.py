"""PNG plots of the reports, drawn with matplotlib's object API (no pyplot, no display: Agg only).

``save_png`` writes a figure atomically; ``accuracy_vs_gflops`` is one table's rows as top-1 (95% CI
error bars) against GFLOPs, the paper's rows beside ours where the paper gives FLOPs ratios.
"""
from __future__ import annotations

import io
import math
import os
import tempfile
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure


def save_png(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Render ``fig`` to PNG in memory, then write it beside ``path`` and rename it over (atomic)."""
    path = Path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(buffer.getvalue())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def accuracy_vs_gflops(summary: pd.DataFrame, title: str, path: str | Path, baseline: str | None = None) -> Path | None:
    """One point per row with results: mean top-1 against GFLOPs, error bars the 95% CI (none for one seed).

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
    ax.set_ylabel("top-1 (%)")
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


__all__ = ["accuracy_vs_gflops", "save_png"]
