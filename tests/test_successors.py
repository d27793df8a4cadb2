"""The non-local block's successors (nlbench/ops/blocks, docs/successors.md), each against a float64 reference
written from its paper's equation, and the global context block against mmcv's installed ``ContextBlock``.

The references are deliberately naive: sums over positions (and channels) spelled out as loops over NumPy
arrays, reading only the blocks' weights.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from nlbench.ops.blocks.cgnl import CompactGeneralizedNonLocal
from nlbench.ops.blocks.gcnet import GlobalContextBlock, SimplifiedNonLocal
from nlbench.ops.registry import init_block, resolve_block

SHAPE = (2, 12, 3, 5, 4)  # odd T, H, W


def _w(conv):
    w = conv.weight.detach().double().numpy()
    return w.reshape(w.shape[0], -1), (np.zeros(w.shape[0]) if conv.bias is None else conv.bias.detach().double().numpy())


def _randomise(block: nn.Module, seed: int = 0) -> nn.Module:
    """Non-zero weights everywhere (a fresh block is the identity, which any reference would match)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)
    return block


def _context(block, clip: np.ndarray) -> np.ndarray:
    """sum_j alpha_j x_j, alpha_j = exp(W_k x_j) / sum_m exp(W_k x_m), over every position j of one clip."""
    wk, bk = _w(block.W_k)
    positions = list(itertools.product(*(range(s) for s in clip.shape[1:])))
    logits = np.array([wk[0] @ clip[(slice(None), *p)] + bk[0] for p in positions])
    alpha = np.exp(logits - logits.max())
    alpha /= alpha.sum()
    return sum(a * clip[(slice(None), *p)] for a, p in zip(alpha, positions))


def snl_reference(block: SimplifiedNonLocal, x: np.ndarray) -> np.ndarray:
    """GCNet eq. 2: z_i = x_i + W_v sum_j softmax_j(W_k x_j) x_j."""
    wv, bv = _w(block.W_v)
    out = np.empty_like(x)
    for n in range(x.shape[0]):
        out[n] = x[n] + (wv @ _context(block, x[n]) + bv)[:, None, None, None]
    return out


def gc_reference(block: GlobalContextBlock, x: np.ndarray) -> np.ndarray:
    """GCNet eq. 4: z_i = x_i + W_v2 ReLU(LN(W_v1 sum_j alpha_j x_j)), LN over the bottleneck's channels."""
    w1, b1 = _w(block.W_v1)
    w2, b2 = _w(block.W_v2)
    gamma = block.LN.weight.detach().double().numpy().reshape(-1)
    beta = block.LN.bias.detach().double().numpy().reshape(-1)
    out = np.empty_like(x)
    for n in range(x.shape[0]):
        u = w1 @ _context(block, x[n]) + b1
        u = (u - u.mean()) / np.sqrt(u.var() + block.LN.eps) * gamma + beta
        out[n] = x[n] + (w2 @ np.maximum(u, 0) + b2)[:, None, None, None]
    return out


def cgnl_reference(block: CompactGeneralizedNonLocal, x: np.ndarray) -> np.ndarray:
    """CGNL (Yue et al. 2018) with the dot-product kernel, the uncompacted form: within each channel group,
    y_(i,k) = sum_(j,l) f(theta_(i,k), phi_(j,l)) g_(j,l) with f(a, b) = a * b, every (position, channel) pair
    to every other; then z = x + GN(W_z y), GN's statistics per (clip, group) over channels and positions."""
    wt, _ = _w(block.theta)
    wp, _ = _w(block.phi)
    wg, _ = _w(block.g)
    wz = block.W_z.weight.detach().double().numpy()[:, :, 0, 0, 0]  # (C, inner / groups): grouped
    groups = block.groups
    gamma, beta = (p.detach().double().numpy() for p in (block.gn.weight, block.gn.bias))
    out = np.empty_like(x)
    b, c = x.shape[:2]
    inner = wt.shape[0]
    cg, og = inner // groups, c // groups
    for n in range(b):
        feat = x[n].reshape(c, -1)  # (C, P)
        theta, phi, g = wt @ feat, wp @ feat, wg @ feat  # (inner, P)
        y = np.zeros_like(theta)
        scale = 1 / np.sqrt(cg * feat.shape[1]) if block.scale else 1.0
        for grp in range(groups):
            rows = range(grp * cg, (grp + 1) * cg)
            pairs = [(l, j) for l in rows for j in range(feat.shape[1])]
            for k in rows:
                for i in range(feat.shape[1]):
                    y[k, i] = sum(theta[k, i] * phi[l, j] * g[l, j] for l, j in pairs) * scale
        z = np.empty((c, feat.shape[1]))
        for grp in range(groups):  # W_z: each group of outputs reads its group of inner channels
            z[grp * og:(grp + 1) * og] = wz[grp * og:(grp + 1) * og] @ y[grp * cg:(grp + 1) * cg]
        for grp in range(groups):
            part = z[grp * og:(grp + 1) * og]
            z[grp * og:(grp + 1) * og] = (part - part.mean()) / np.sqrt(part.var() + block.gn.eps)
        z = z * gamma[:, None] + beta[:, None]
        out[n] = x[n] + z.reshape(x[n].shape)
    return out


CASES = [
    (lambda: SimplifiedNonLocal(12), snl_reference),
    (lambda: GlobalContextBlock(12, ratio=1 / 4), gc_reference),
    (lambda: GlobalContextBlock(12, ratio=1 / 6), gc_reference),  # int(12 / 6) = 2 channels
    (lambda: CompactGeneralizedNonLocal(12, groups=2), cgnl_reference),
    (lambda: CompactGeneralizedNonLocal(12, inner_channels=8, groups=4, scale=True), cgnl_reference),
    (lambda: CompactGeneralizedNonLocal(12, groups=1), cgnl_reference),
]


@pytest.mark.parametrize("make, reference", CASES)
def test_successor_equals_its_float64_reference(make, reference):
    block = _randomise(make().double())
    x = torch.randn(SHAPE, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    got = block.train()(x).detach().numpy()  # none of them has batch statistics: train == eval
    want = reference(block, x.numpy())
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("make, reference", CASES)
def test_successor_starts_as_the_identity(make, reference):
    block = _randomise(make())
    init_block(block)
    x = torch.randn(SHAPE)
    assert torch.equal(block(x), x)


@pytest.mark.parametrize("name", ["simplified_nl", "global_context", "cgnl"])
def test_registered_by_name(name):
    assert resolve_block(name).block_name == name


def test_global_context_cost_is_what_its_ops_cost():
    from nlbench.measure import count_flops

    block = GlobalContextBlock(64, ratio=1 / 4)
    n = count_flops(block, torch.randn(1, 64, 2, 4, 4))
    p, c, r = 2 * 4 * 4, 64, 16
    # W_k (P x C), the weighted sum (C x P), W_v1 (C x r), LN (fvcore: 5 per element of the r outputs, as a
    # norm without running statistics), W_v2 (r x C): the pairwise term of a non-local block is gone.
    assert n.unsupported == {}
    assert n.total == p * c + c * p + c * r + 5 * r + r * c


# ----------------------------------------------------------------------------------------- the peer


def _mmcv_context_block():
    pytest.importorskip("mmengine", reason="mmengine is not installed (pip install -e '.[peers]')")
    return pytest.importorskip("mmcv.cnn.bricks.context_block",
                               reason="mmcv-lite is not installed (pip install -e '.[peers]')").ContextBlock


@pytest.mark.parametrize("ratio", [1 / 16, 1 / 4])
@pytest.mark.parametrize("train", [True, False])
def test_global_context_at_one_frame_equals_mmcv_context_block(ratio, train):
    """GCNet's own block (mmcv ContextBlock, pooling 'att', fusion 'channel_add'), same weights: outputs and
    every gradient (input and parameters) in float64, in train and eval mode."""
    ContextBlock = _mmcv_context_block()
    c = 32
    peer = _randomise(ContextBlock(c, ratio=ratio, pooling_type="att", fusion_types=("channel_add",)).double())
    ours = GlobalContextBlock(c, ratio=ratio).double()
    add = peer.channel_add_conv
    pairs = [(ours.W_k, peer.conv_mask), (ours.W_v1, add[0]), (ours.LN, add[1]), (ours.W_v2, add[3])]
    with torch.no_grad():
        for mine, theirs in pairs:
            for name, p in mine.named_parameters():
                p.copy_(getattr(theirs, name).reshape(p.shape))
    ours.train(train)
    peer.train(train)
    x = torch.randn(3, c, 5, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    x_ours, x_peer = x.clone().unsqueeze(2).requires_grad_(), x.clone().requires_grad_()
    out_ours, out_peer = ours(x_ours), peer(x_peer)
    torch.testing.assert_close(out_ours.squeeze(2), out_peer, rtol=1e-10, atol=1e-12)
    weight = torch.randn(out_peer.shape, dtype=torch.float64)
    (out_ours.squeeze(2) * weight).sum().backward()
    (out_peer * weight).sum().backward()
    torch.testing.assert_close(x_ours.grad.squeeze(2), x_peer.grad, rtol=1e-10, atol=1e-12)
    for mine, theirs in pairs:
        for name, p in mine.named_parameters():
            torch.testing.assert_close(p.grad.reshape(-1), getattr(theirs, name).grad.reshape(-1), rtol=1e-10,
                                       atol=1e-12)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in peer.parameters())


def test_global_context_initialises_as_mmcv():
    """The same rule as ContextBlock.reset_parameters: W_k kaiming fan_in, W_v2 zero (identity at start)."""
    ContextBlock = _mmcv_context_block()
    torch.manual_seed(0)
    peer = ContextBlock(64, ratio=1 / 4)
    torch.manual_seed(0)
    ours = GlobalContextBlock(64, ratio=1 / 4)
    assert torch.all(ours.W_v2.weight == 0) and torch.all(peer.channel_add_conv[3].weight == 0)
    assert torch.all(ours.W_k.bias == 0) and torch.all(peer.conv_mask.bias == 0)
    # Same distribution (not the same draws: the two build their layers in another order).
    assert ours.W_k.weight.std().item() == pytest.approx(peer.conv_mask.weight.std().item(), rel=0.5)
