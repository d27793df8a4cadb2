"""Latency and peak memory of one non-local block per instantiation against the size T x H x W of its input.

Measured here and now (not read from the sweeps): one ``NonLocalBlock`` (the paper's defaults: inner C/2,
keys max-pooled 1x2x2 after phi/g, the fastest exact path) per instantiation on a (batch, C, T, H, W)
input, a forward + backward pass (the training step's cost), median of a few timed calls, peak memory of
one call. The numbers go to a CSV beside the plot.
"""
from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import torch
from matplotlib.figure import Figure

from nlbench.io import atomic_write_text
from nlbench.measure import measure_latency, peak_memory_mb
from nlbench.ops.nonlocal_block import INSTANTIATIONS, NonLocalBlock
from nlbench.report.plots import save_png

SIZES = ((2, 7, 7), (4, 14, 14), (8, 14, 14), (8, 28, 28))  # T x H x W: res4/res3-like maps of short clips


def measure_blocks(
    sizes=SIZES, channels: int = 64, batch: int = 2, repeats: int = 5, instantiations=INSTANTIATIONS, seed: int = 0
) -> pd.DataFrame:
    """One row per (instantiation, size): positions, latency (median ms, fwd+bwd) and peak memory (MiB)."""
    torch.manual_seed(seed)
    rows = []
    for inst in instantiations:
        block = NonLocalBlock(channels, instantiation=inst).train()
        for t, h, w in sizes:
            x = torch.randn(batch, channels, t, h, w, requires_grad=True)

            def step():
                block.zero_grad(set_to_none=True)
                x.grad = None
                block(x).sum().backward()

            timing = measure_latency(step, warmup=1, repeats=repeats, device="cpu")
            rows.append({
                "instantiation": inst, "T": t, "H": h, "W": w, "positions": t * h * w, "channels": channels,
                "batch": batch, "pass": "fwd+bwd", "latency_ms": timing["median_ms"],
                "peak_mem_mb": peak_memory_mb(step, device="cpu"), "repeats": repeats,
            })
    return pd.DataFrame(rows)


def plot_block_scaling(frame: pd.DataFrame, path: str | Path) -> Path:
    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    for inst, rows in frame.groupby("instantiation", sort=False):
        rows = rows.sort_values("positions")
        for ax, column in zip(axes, ("latency_ms", "peak_mem_mb")):
            ax.plot(rows["positions"], rows[column], "o-", label=inst.replace("_", " "))
    labels = frame.drop_duplicates("positions").sort_values("positions")
    first = frame.iloc[0]
    for ax, ylabel in zip(axes, ("latency, forward + backward (ms)", "peak memory (MiB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(labels["positions"].tolist())
        ax.set_xticklabels([f"{r.T}x{r.H}x{r.W}" for r in labels.itertuples()], fontsize=8)
        ax.minorticks_off()
        ax.set_xlabel("T x H x W of the block's input")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"One non-local block, C={first['channels']}, batch {first['batch']}, keys pooled 1x2x2 (CPU)",
                 fontsize=10)
    return save_png(fig, path)


def write_block_scaling(out_dir: str | Path, **kwargs) -> tuple[Path, Path]:
    """Measure, then write ``block_scaling.csv`` and ``block_scaling.png`` in ``out_dir``."""
    out_dir = Path(out_dir)
    frame = measure_blocks(**kwargs)
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, float_format="%.4f")
    csv = out_dir / "block_scaling.csv"
    atomic_write_text(csv, buffer.getvalue())
    return csv, plot_block_scaling(frame, out_dir / "block_scaling.png")


__all__ = ["SIZES", "measure_blocks", "plot_block_scaling", "write_block_scaling"]
