"""The paper's Figure 3 on the embedded data: where a trained non-local block's positions look.

A trained model (a sweep's run directory with ``model.pt`` and ``config.yaml``) sees one validation clip of
the spacetime (else time) family of the synthetic benchmark. The query is the feature-map position on the
first cue (frame 0); the figure shows, over the clip's frames, the normalised pairwise weights
f(x_i, x_j) / C(x) from that query to every key as a heat map, the top-k keys with arrows, and the two
cue sprites (ground truth) outlined. It also measures how much of the query's weight falls on keys that
cover the other cue, against what uniform weights would put there.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import ConnectionPatch, Rectangle

from nlbench.data import CLASS_NAMES, SyntheticClips
from nlbench.io import atomic_write_text
from nlbench.ops.nonlocal_block import NonLocalBlock
from nlbench.ops.registry import placed_blocks
from nlbench.report.plots import save_png

FAMILIES = ("spacetime", "time", "space")  # the clip's family, in order of preference


@dataclass
class Attention:
    weights: np.ndarray  # (Tk, Hk, Wk): the query's weight on each key (zero outside the query's group)
    query: tuple[int, int, int]  # (t, h, w) on the block's input map
    grid: tuple[int, int, int]  # (T, H, W) of the block's input map
    block: str  # the module's name in the model
    mode: str | int


def load_run_model(run_dir: str | Path):
    """(model in eval mode, its RunConfig) from ``run_dir/config.yaml`` and ``run_dir/model.pt``; the number of
    classes is read from the classifier's weights (2 for the synthetic benchmark)."""
    from nlbench.record import WEIGHTS
    from nlbench.training.config import RunConfig

    run_dir = Path(run_dir)
    config = RunConfig.load(run_dir / "config.yaml")
    state = torch.load(run_dir / WEIGHTS, map_location="cpu", weights_only=True)
    num_classes = int(state["fc.weight"].shape[0]) if "fc.weight" in state else len(CLASS_NAMES)
    model = config.model.as_model_config(num_classes=num_classes).build()
    model.load_state_dict(state)
    return model.eval(), config


def synthetic_val(config) -> SyntheticClips:
    d = config.data
    return SyntheticClips(d.synthetic(), "val")


def pick_clip(ds: SyntheticClips, families=FAMILIES) -> int:
    """The first validation clip of the first family present (spacetime, time, space)."""
    present = ds.families
    for family in families:
        hits = np.flatnonzero(present == family)
        if len(hits):
            return int(hits[0])
    return 0


def _blocks(model: torch.nn.Module) -> list[tuple[str, NonLocalBlock]]:
    # The blocks that can record per-query attention (the non-local block's record_attention); a global
    # context block has one map for every query, and a researcher's block may have none.
    return [(n, m) for n, m in placed_blocks(model).items() if hasattr(m, "record_attention")]


def _key_grid(block: NonLocalBlock, t: int, h: int, w: int) -> tuple[int, int, int]:
    kt, kh, kw = block.pool_kernel if block.subsample else (1, 1, 1)
    return t // kt, h // kh, w // kw


def query_attention(model: torch.nn.Module, clip: torch.Tensor, query_xy: tuple[float, float], frame: int,
                    frames: int, size: int) -> Attention:
    """Run ``clip`` (C, T, H, W) through ``model``; the attention of the non-local block with the largest input
    map (spacetime blocks first), from the position covering pixel ``query_xy`` (y, x) of ``frame``."""
    blocks = _blocks(model)
    if not blocks:
        raise ValueError("the model has no non-local block")
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out, n=n: shapes.__setitem__(n, tuple(inp[0].shape[2:])))
             for n, m in blocks]
    for _, m in blocks:
        m.record_attention = True
    try:
        with torch.no_grad():
            model(clip[None])
    finally:
        for hook in hooks:
            hook.remove()
        for _, m in blocks:
            m.record_attention = False
    # The deepest of the spacetime blocks on the largest map (the finest positions, after the most context).
    ranked = [(nb[1].mode == "spacetime", math.prod(shapes[nb[0]]), i) for i, nb in enumerate(blocks)]
    name, block = blocks[max(ranked)[2]]
    t, h, w = (1,) * (3 - len(shapes[name])) + shapes[name]
    att = block.attention[0]  # (groups, positions, keys)
    block.attention = None
    tq = min(t - 1, frame * t // frames)
    hq, wq = min(h - 1, int(query_xy[0] * h / size)), min(w - 1, int(query_xy[1] * w / size))
    tk, hk, wk = _key_grid(block, t, h, w)
    out = np.zeros((tk, hk, wk), dtype=np.float64)
    mode = block.mode
    if mode == "spacetime":
        out[:] = att[0, (tq * h + hq) * w + wq].reshape(tk, hk, wk).numpy()
    elif mode == "space":  # group = frame; keys: that frame's pooled grid
        out[tq] = att[tq, hq * w + wq].reshape(hk, wk).numpy()
    elif mode == "time":  # group = location; keys: that location over the pooled frames
        out[:, hq, wq] = att[hq * w + wq, tq].numpy()
    else:  # groups of k consecutive frames
        g, k = tq // mode, mode
        per = (k * tk // t)
        out[g * per:(g + 1) * per] = att[g, ((tq - g * k) * h + hq) * w + wq].reshape(per, hk, wk).numpy()
    return Attention(out, (tq, hq, wq), (t, h, w), name, mode)


def _key_box(key: tuple[int, int, int], keys: tuple[int, int, int], frames: int, size: int):
    """(first frame, last frame + 1, y0, y1, x0, x1) in pixels of the clip that a key position covers."""
    (a, b, c), (tk, hk, wk) = key, keys
    return (a * frames // tk, (a + 1) * frames // tk, b * size / hk, (b + 1) * size / hk, c * size / wk,
            (c + 1) * size / wk)


def cue_weight(att: Attention, sprite, sprite_size: int, frames: int, size: int) -> tuple[float, float]:
    """(weight the query puts on keys overlapping ``sprite``, what uniform weights over its keys would put)."""
    keys = att.weights.shape
    hit = np.zeros(keys, dtype=bool)
    for key in np.ndindex(*keys):
        f0, f1, y0, y1, x0, x1 = _key_box(key, keys, frames, size)
        for top in sprite.tops[f0:f1]:
            if top is not None and top[0] < y1 and top[0] + sprite_size > y0 and top[1] < x1 and top[1] + sprite_size > x0:
                hit[key] = True
    live = att.weights > 0
    total = att.weights.sum()
    return float(att.weights[hit].sum() / total), float((hit & live).sum() / max(live.sum(), 1))


def draw_attention(clip, att: Attention, path: str | Path, title: str, sprite_size: int, top_k: int = 3) -> Path:
    frames, size = clip.frames.shape[0], clip.frames.shape[1]
    tk, hk, wk = att.weights.shape
    cues = [s for s in clip.sprites if s.role == "cue"]
    # One panel per key time step: the cue frame inside its span if there is one, else its middle frame.
    shown = []
    for a in range(tk):
        f0, f1 = a * frames // tk, (a + 1) * frames // tk
        cue_frames = [f for f in range(f0, f1) if any(s.tops[f] is not None for s in cues)]
        shown.append(cue_frames[0] if cue_frames else (f0 + f1 - 1) // 2)
    fig = Figure(figsize=(3.2 * tk + 0.8, 3.6))
    axes = np.atleast_1d(fig.subplots(1, tk))
    vmax = att.weights.max() or 1.0
    for a, (ax, f) in enumerate(zip(axes, shown)):
        ax.imshow(clip.frames[f], interpolation="nearest", extent=(0, size, size, 0))
        ax.imshow(att.weights[a], cmap="inferno", alpha=0.45, vmin=0, vmax=vmax, extent=(0, size, size, 0),
                  interpolation="nearest")
        for s in cues:
            if s.tops[f] is not None:
                y, x = s.tops[f]
                ax.add_patch(Rectangle((x, y), sprite_size, sprite_size, fill=False, ec="lime", lw=1.2))
        ax.set_title(f"frame {f} (keys here cover frames {a * frames // tk}-{(a + 1) * frames // tk - 1})", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    # The query: its cell on the input map, in the panel of its frames.
    t, h, w = att.grid
    tq, hq, wq = att.query
    qa = min(tk - 1, tq * tk // t)
    cell_h, cell_w = size / h, size / w
    axes[qa].add_patch(Rectangle((wq * cell_w, hq * cell_h), cell_w, cell_h, fill=False, ec="cyan", lw=2))
    q_xy = ((wq + 0.5) * cell_w, (hq + 0.5) * cell_h)
    flat = att.weights.ravel()
    for rank, idx in enumerate(np.argsort(flat)[::-1][:top_k]):
        if flat[idx] <= 0:
            break
        a, b, c = np.unravel_index(idx, att.weights.shape)
        k_xy = ((c + 0.5) * size / wk, (b + 0.5) * size / hk)
        arrow = ConnectionPatch(xyA=q_xy, xyB=k_xy, coordsA="data", coordsB="data", axesA=axes[qa], axesB=axes[a],
                                arrowstyle="->", color="cyan", lw=2.0 - 0.4 * rank, alpha=0.9)
        fig.add_artist(arrow)
        axes[a].annotate(f"{flat[idx]:.2f}", k_xy, color="white", fontsize=7, ha="center", va="center")
    fig.suptitle(title, fontsize=9)
    return save_png(fig, path)


def figure3(run_dir: str | Path, out_dir: str | Path, label: str = "", top_k: int = 3) -> dict:
    """Draw ``attention.png`` (and ``attention.json``: the run, clip, block and cue weights) in ``out_dir``."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    model, config = load_run_model(run_dir)
    ds = synthetic_val(config)
    index = pick_clip(ds)
    clip = ds.clip(index)
    cues = [s for s in clip.sprites if s.role == "cue"]
    s = ds.config.sprite_size
    first = next(f for f, top in enumerate(cues[0].tops) if top is not None)
    y, x = cues[0].tops[first]
    att = query_attention(model, ds[index][0], (y + s / 2, x + s / 2), first, ds.config.frames, ds.config.size)
    other, uniform = cue_weight(att, cues[-1], s, ds.config.frames, ds.config.size)
    name = ds.class_names[clip.label]
    title = (f"{label or run_dir.name}: block {att.block} ({'x'.join(map(str, att.grid))}, mode {att.mode}), "
             f"val clip {index} ({clip.family}, {name})\n"
             f"query (cyan box) on the first cue; heat map: its pairwise weights; "
             f"arrows: top-{top_k} keys; green: the cues")
    png = draw_attention(clip, att, out_dir / "attention.png", title, s, top_k)
    info = {
        "run_dir": str(run_dir), "label": label, "clip_index": index, "family": clip.family, "class": name,
        "block": att.block, "mode": str(att.mode), "input_map": list(att.grid), "key_grid": list(att.weights.shape),
        "query": list(att.query), "weight_on_other_cue": round(other, 4), "uniform_on_other_cue": round(uniform, 4),
        "png": png.name,
    }
    atomic_write_text(out_dir / "attention.json", json.dumps(info, indent=2) + "\n")
    return info


__all__ = ["Attention", "cue_weight", "draw_attention", "figure3", "load_run_model", "pick_clip", "query_attention"]
