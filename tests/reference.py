"""A float64 NumPy reference of the non-local block, written from eq. (1)-(6) of the paper.

Deliberately naive and independent of nlbench's code: one output position at a time, with the set of
positions j that position i sees spelled out per mode, max pooling written as loops, and BatchNorm
written from its definition. It reads only the block's weights and knobs.
"""
from __future__ import annotations

import itertools

import numpy as np


def _weights(conv):
    w = conv.weight.detach().double().numpy()
    bias = np.zeros(w.shape[0]) if conv.bias is None else conv.bias.detach().double().numpy()
    return w.reshape(w.shape[0], w.shape[1]), bias


def _embed(conv, feat):
    """A 1x1x1 conv on a (C, T, H, W) array."""
    if conv is None:
        return feat
    w, b = _weights(conv)
    return np.einsum("oc,cthw->othw", w, feat) + b[:, None, None, None]


def _max_pool(feat, kernel):
    """Max pool with stride = kernel, floor mode (trailing rows that do not fill a window are dropped)."""
    kt, kh, kw = kernel
    c, t, h, w = feat.shape
    out = np.empty((c, t // kt, h // kh, w // kw))
    for i, j, k in itertools.product(range(t // kt), range(h // kh), range(w // kw)):
        window = feat[:, i * kt:(i + 1) * kt, j * kh:(j + 1) * kh, k * kw:(k + 1) * kw]
        out[:, i, j, k] = window.reshape(c, -1).max(axis=1)
    return out


def _sees(mode, kernel, i, j) -> bool:
    """Does output position i = (t, h, w) sum over key position j = (t', h', w') of the pooled grid?"""
    (t, h, w), (tj, hj, wj) = i, j
    kt = kernel[0]
    if mode == "spacetime":
        return True
    if mode == "space":  # same frame (space-only blocks never pool over time)
        return tj == t
    if mode == "time":  # same location (time-only blocks never pool over space)
        return (hj, wj) == (h, w)
    return (tj * kt) // mode == t // mode  # int: the same group of `mode` consecutive frames


def _group_size(mode, t, h, w) -> int:
    """N: how many positions the output position's group holds (before subsampling)."""
    return {"spacetime": t * h * w, "space": h * w, "time": t}.get(mode, mode * h * w if isinstance(mode, int) else 0)


def reference_forward(block, x, *, bn_training: bool | None = None, norm_by: str = "keys"):
    """z = BN(W_z y) + x with y from eq. (1), for a block and an input of any supported rank.

    With subsampling the paper writes eq. (1) as y_i = 1/C(x_hat) sum_j f(x_i, x_hat_j) g(x_hat_j): for dot
    product and concatenation C(x_hat) is the number of keys x_hat_j that position i sums over
    (``norm_by="keys"``, the paper; deliberately not read from the block). ``norm_by="positions"`` divides
    by the positions of x in i's group instead, the block's other, non-paper option.

    Returns (z, weights) where weights[b][i] maps each seen key position to f(x_i, x_j) / C.
    """
    x = x.detach().double().numpy()
    shape = x.shape
    B, C = shape[:2]
    T, H, W = (1,) * (5 - x.ndim) + shape[2:]
    x5 = x.reshape(B, C, T, H, W)
    kernel = block.pool_kernel if block.subsample else (1, 1, 1)
    inst = block.instantiation
    scale = block.scale
    pooled_grid = list(itertools.product(range(T // kernel[0]), range(H // kernel[1]), range(W // kernel[2])))

    ys, all_weights = [], []
    for b in range(B):
        X = x5[b]
        theta = _embed(block.theta, X)  # gaussian: theta(x) = x
        if block.subsample_order == "before":
            Xp = _max_pool(X, kernel)
            phi, g = _embed(block.phi, Xp), _embed(block.g, Xp)
        else:
            phi, g = _max_pool(_embed(block.phi, X), kernel), _max_pool(_embed(block.g, X), kernel)
        y = np.zeros((g.shape[0], T, H, W))
        weights = {}
        for i in itertools.product(range(T), range(H), range(W)):
            J = [j for j in pooled_grid if _sees(block.mode, kernel, i, j)]
            th_i = theta[:, i[0], i[1], i[2]]
            ph = np.stack([phi[:, j[0], j[1], j[2]] for j in J])  # (|J|, d_k)
            gj = np.stack([g[:, j[0], j[1], j[2]] for j in J])  # (|J|, d_v)
            if inst in ("gaussian", "embedded_gaussian"):
                f = np.exp(scale * ph @ th_i)  # eq. (2) / (3)
                norm = f.sum()
            else:
                if inst == "dot_product":
                    f = scale * ph @ th_i  # eq. (4)
                else:
                    w_f = block.w_f.weight.detach().double().numpy()[0]
                    d = th_i.shape[0]
                    f = np.maximum(0.0, np.array([w_f[:d] @ th_i + w_f[d:] @ p for p in ph]))  # eq. (5)
                norm = _group_size(block.mode, T, H, W) if norm_by == "positions" else len(J)
            y[:, i[0], i[1], i[2]] = (f[:, None] * gj).sum(0) / norm
            weights[i] = dict(zip(J, f / norm))
        ys.append(y)
        all_weights.append(weights)
    y = np.stack(ys)  # (B, d_v, T, H, W)

    wz, bz = _weights(block.W_z)
    z = np.einsum("oc,bcthw->bothw", wz, y) + bz[None, :, None, None, None]
    if block.bn is not None:
        bn = block.bn
        training = bn.training if bn_training is None else bn_training
        if training:
            mean = z.mean(axis=(0, 2, 3, 4))
            var = z.var(axis=(0, 2, 3, 4))
        else:
            mean = bn.running_mean.double().numpy()
            var = bn.running_var.double().numpy()
        gamma = bn.weight.detach().double().numpy()
        beta = bn.bias.detach().double().numpy()
        z = (z - mean[None, :, None, None, None]) / np.sqrt(var + bn.eps)[None, :, None, None, None]
        z = z * gamma[None, :, None, None, None] + beta[None, :, None, None, None]
    return (z + x5).reshape(shape), all_weights
