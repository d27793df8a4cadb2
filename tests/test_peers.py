"""Every preset against its peer's real code (the ``peers`` extra: pytorchvideo, mmcv-lite + mmengine).

A peer block is built from the installed package, random weights (BN gamma non-zero, random running
statistics) are copied from ours to the peer's and, in the other direction, from the peer's to ours; then the
eval output, the train output, the BN running statistics after the train step and every gradient (the input's
and each parameter's) must agree: within 1e-10 relative in float64, 1e-5 in float32, on odd shapes, on the
naive and the fast path. Parameter counts must be equal.

Peers (docs/presets.md):
- ``slowfast`` and ``released``: pytorchvideo 0.1.5 ``create_nonlocal`` (its ``NonLocal.forward`` is SlowFast's
  ``Nonlocal.forward``, and computes what video-nonlocal-net's Caffe2 ``spacetime_nonlocal`` does: pool x
  before phi and g, d^-0.5 inside the softmax only, dot product divided by the number of keys; Caffe2 itself
  does not install beside this torch).
- ``mmaction2``: mmcv 2.2 ``NonLocal3d(sub_sample=True, use_scale=False, norm_cfg=BN3d)``, the block of
  mmaction2's Kinetics I3D non-local configs; with ``scale=True`` (embedded Gaussian), the block of its
  SlowOnly non-local configs (``use_scale=True``).
- ``mmcv``: mmcv ``NonLocal3d`` defaults (``use_scale=True``, ``norm_cfg=None``), with and without sub_sample.
"""
from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from nlbench.ops import NonLocalBlock
from nlbench.ops.instantiations import BY_NAME

C, SHAPE = 10, (2, 10, 3, 5, 7)  # d = 5 inner channels; odd T, H, W (floor-mode pooling drops a row)
TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


def _pytorchvideo():
    return pytest.importorskip(
        "pytorchvideo.layers.nonlocal_net", reason="pytorchvideo is not installed (pip install -e '.[peers]')"
    )


def _mmcv():
    pytest.importorskip("mmengine", reason="mmengine is not installed (pip install -e '.[peers]')")
    return pytest.importorskip(
        "mmcv.cnn.bricks.non_local", reason="mmcv-lite is not installed (pip install -e '.[peers]')"
    )


def _unwrap(m: nn.Module) -> nn.Module:
    """mmcv wraps g and phi in Sequential(ConvModule, MaxPool3d) when it subsamples."""
    return m[0] if isinstance(m, nn.Sequential) else m


def pytorchvideo_peer(instantiation: str, subsample: bool):
    peer = _pytorchvideo().create_nonlocal(
        dim_in=C, dim_inner=C // 2, pool_size=(1, 2, 2) if subsample else (1, 1, 1),
        instantiation={"embedded_gaussian": "softmax", "dot_product": "dot_product"}[instantiation],
    )

    def pairs(ours: NonLocalBlock):
        return [(ours.theta, peer.conv_theta), (ours.phi, peer.conv_phi), (ours.g, peer.conv_g),
                (ours.W_z, peer.conv_out), (ours.bn, peer.norm)]

    return peer, pairs


def mmcv_peer(instantiation: str, subsample: bool, **cfg):
    peer = _mmcv().NonLocal3d(C, sub_sample=subsample, mode=instantiation, **cfg)

    def pairs(ours: NonLocalBlock):
        out = [(ours.g, _unwrap(peer.g).conv), (ours.W_z, peer.conv_out.conv)]
        if instantiation != "gaussian":
            out += [(ours.theta, peer.theta.conv), (ours.phi, _unwrap(peer.phi).conv)]
        if instantiation == "concatenation":
            out.append((ours.w_f, peer.concat_project.conv))
        if ours.bn is not None:
            out.append((ours.bn, peer.conv_out.norm))
        return out

    return peer, pairs


BN3D = dict(norm_cfg=dict(type="BN3d", requires_grad=True))
# (preset, overrides of ours, peer builder, peer keyword arguments)
CASES = [
    *(("slowfast", {}, pytorchvideo_peer, {}, inst) for inst in ("embedded_gaussian", "dot_product")),
    *(("released", {}, pytorchvideo_peer, {}, inst) for inst in ("embedded_gaussian", "dot_product")),
    *(("mmaction2", {}, mmcv_peer, dict(use_scale=False, **BN3D), inst)
      for inst in ("gaussian", "embedded_gaussian", "dot_product", "concatenation")),
    ("mmaction2", {"scale": True}, mmcv_peer, dict(use_scale=True, **BN3D), "embedded_gaussian"),  # SlowOnly NL
    *(("mmcv", {}, mmcv_peer, {}, inst) for inst in ("gaussian", "embedded_gaussian", "dot_product", "concatenation")),
]
IDS = [f"{p}{'+' + ','.join(o) if o else ''}-{inst}" for p, o, _, _, inst in CASES]


def _tensors(module: nn.Module) -> list[Tensor]:
    """Parameters then BN buffers, in a fixed order."""
    out = list(module.parameters())
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        out += [module.running_mean, module.running_var]
    return out


def randomise(modules: list[nn.Module], seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in modules:
            for p in m.parameters():
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype) * (0.5 if p.dim() > 1 else 0.3))
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen, dtype=torch.float64) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen, dtype=torch.float64) + 0.5)
                assert (m.weight.abs() > 0).all()  # a zero gamma would hide the whole non-local term


def copy_weights(pairs, ours_to_peer: bool) -> None:
    with torch.no_grad():
        for a, b in pairs:
            src, dst = (a, b) if ours_to_peer else (b, a)
            for s, d in zip(_tensors(src), _tensors(dst), strict=True):
                assert s.numel() == d.numel()
                d.copy_(s.reshape(d.shape))


def rel(a: Tensor, b: Tensor) -> float:
    scale = b.norm()
    assert scale > 0, "comparing against an all-zero tensor checks nothing"
    return ((a - b).norm() / scale).item()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("path", ["naive", "fast"])
@pytest.mark.parametrize("ours_to_peer", [True, False], ids=["ours->peer", "peer->ours"])
@pytest.mark.parametrize("preset,overrides,build,peer_kwargs,inst", CASES, ids=IDS)
def test_preset_equals_peer(preset, overrides, build, peer_kwargs, inst, ours_to_peer, path, dtype):
    subsample = True
    impl = "naive" if path == "naive" else BY_NAME[inst].fast
    peer, pairs = build(inst, subsample, **peer_kwargs)
    ours = NonLocalBlock.from_preset(preset, C, instantiation=inst, impl=impl, **overrides)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in peer.parameters())
    ours, peer = ours.to(dtype), peer.to(dtype)
    mapping = pairs(ours)
    randomise([a if ours_to_peer else b for a, b in mapping], seed=1)
    copy_weights(mapping, ours_to_peer)

    gen = torch.Generator().manual_seed(2)
    x = torch.randn(SHAPE, generator=gen, dtype=torch.float64).to(dtype)
    grad_out = torch.randn(SHAPE, generator=gen, dtype=torch.float64).to(dtype)
    tol = TOL[dtype]

    with torch.no_grad():
        z_ours, z_peer = ours.eval()(x), peer.eval()(x)
    assert rel(z_ours - x, z_peer - x) <= tol  # the non-local term: x itself would hide an error in it

    # mmcv's concatenation divides its ReLU output in place (``pairwise_weight /= ...``), so autograd refuses
    # to differentiate it: in training we compare its output and BN statistics, and check it still refuses.
    peer_backward = not (build is mmcv_peer and inst == "concatenation")
    outs, grads = [], []
    for block in (ours, peer):
        xi = x.clone().requires_grad_()
        out = block.train()(xi)
        outs.append(out.detach() - x)
        if block is ours or peer_backward:
            (out * grad_out).sum().backward()
            grads.append(xi.grad)
        else:
            with pytest.raises(RuntimeError, match="modified by an inplace operation"):
                (out * grad_out).sum().backward()
    assert rel(*outs) <= tol
    for a, b in mapping:
        if isinstance(a, nn.modules.batchnorm._BatchNorm):
            assert rel(a.running_mean, b.running_mean) <= tol and rel(a.running_var, b.running_var) <= tol
    if not peer_backward:
        return
    assert rel(*grads) <= tol
    # Some gradients are zero in exact arithmetic: phi's bias under a softmax over j (it adds theta_i . b to
    # every logit of row i); under a train-mode BN, whose batch mean removes any constant, W_z's bias and,
    # with a softmax (its weights sum to 1, so b_g reaches y_i unchanged), g's bias. Both sides must then be
    # ~0 next to the block's gradients; every other gradient is compared relative to itself.
    softmax, bn = inst in ("gaussian", "embedded_gaussian"), ours.bn is not None
    cancelled = {id(b) for b, zero in ((ours.W_z.bias, bn), (ours.g.bias, bn and softmax)) if zero and b is not None}
    if inst == "embedded_gaussian":
        cancelled.add(id(ours.phi.bias))
    total = torch.cat([p.grad.flatten() for p in ours.parameters()]).norm()
    for a, b in mapping:
        for p, q in zip(a.parameters(), b.parameters(), strict=True):
            if id(p) in cancelled:
                assert max(p.grad.norm(), q.grad.norm()) <= tol * total
            else:
                assert rel(p.grad.reshape(q.shape), q.grad) <= tol

@pytest.mark.parametrize("inst", ["gaussian", "embedded_gaussian", "dot_product", "concatenation"])
def test_mmcv_defaults_without_subsampling(inst):
    # mmcv NonLocal3d's own default is sub_sample=False.
    peer, pairs = mmcv_peer(inst, subsample=False)
    ours = NonLocalBlock.from_preset("mmcv", C, instantiation=inst, subsample=False).double()
    peer = peer.double()
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in peer.parameters())
    mapping = pairs(ours)
    randomise([a for a, _ in mapping], seed=3)
    copy_weights(mapping, True)
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    with torch.no_grad():
        assert rel(ours.eval()(x) - x, peer.eval()(x) - x) <= 1e-10


@pytest.mark.parametrize("preset,overrides,build,peer_kwargs,inst", CASES, ids=IDS)
def test_fresh_preset_block_has_the_peers_parameter_shapes(preset, overrides, build, peer_kwargs, inst):
    peer, pairs = build(inst, True, **peer_kwargs)
    ours = NonLocalBlock.from_preset(preset, C, instantiation=inst, **overrides)
    for a, b in pairs(ours):
        assert [p.numel() for p in a.parameters()] == [p.numel() for p in b.parameters()]
