"""The non-local block against the float64 reference of eq. (1)-(6), and its contracts."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from nlbench import NonLocalBlock
from nlbench.ops import INSTANTIATIONS, PRESETS
from nlbench.ops.instantiations import BY_NAME
from tests.reference import reference_forward

MODES = ("spacetime", "space", "time", 2)
C = 6


def randomise(block: NonLocalBlock, seed: int = 0) -> NonLocalBlock:
    """Weights of order one everywhere, so every term of the block moves the output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * (0.5 if p.dim() > 1 else 0.3))
        if block.bn is not None:
            block.bn.running_mean.copy_(torch.randn(block.in_channels, generator=gen) * 0.2)
            block.bn.running_var.copy_(torch.rand(block.in_channels, generator=gen) + 0.5)
    return block


def make(inst, mode, order, sub, scale, impl="auto", **kw):
    # "fast": the instantiation's fast path by name; "auto" may run either path (nlbench.ops.dispatch).
    return NonLocalBlock(
        C, instantiation=inst, mode=mode, subsample=sub, subsample_order=order, scale=scale,
        inner_channels=4, impl=BY_NAME[inst].fast if impl == "fast" else impl, **kw,
    )


CASES = [
    (inst, mode, order, sub, scale)
    for inst, mode, order, sub, scale in itertools.product(
        INSTANTIATIONS, MODES, ("after", "before"), (True, False), (False, True)
    )
    if not (inst == "concatenation" and scale)
]


@pytest.mark.parametrize("inst,mode,order,sub,scale", CASES)
@pytest.mark.parametrize("impl", ["naive", "fast", "auto"])
def test_matches_reference_float64(inst, mode, order, sub, scale, impl):
    # The default block (norm_by left alone) against the paper's equations: with subsampling, dot product
    # and concatenation divide by C(x_hat) = N', the keys. Odd H and W exercise floor-mode pooling; T = 4
    # so that 2-frame groups exist.
    x = torch.randn(2, C, 4, 5, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    block = randomise(make(inst, mode, order, sub, scale, impl)).double().eval()
    expected, _ = reference_forward(block, x)
    with torch.no_grad():
        out = block(x)
    # Compare the non-local term itself: the residual x would hide an error in a small z.
    delta, expected_delta = (out - x).numpy(), expected - x.numpy()
    assert np.abs(expected_delta).max() > 1e-2
    np.testing.assert_allclose(delta, expected_delta, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("inst", ["dot_product", "concatenation"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("impl", ["naive", "auto"])
def test_norm_by_positions_divides_by_the_positions_of_x(inst, mode, impl):
    x = torch.randn(2, C, 4, 5, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    # A 2x2x2 kernel so that every mode subsamples (time-only pools t alone).
    block = make(inst, mode, "after", True, False, impl, norm_by="positions", pool_kernel=(2, 2, 2))
    block = randomise(block).double().eval()
    expected, _ = reference_forward(block, x, norm_by="positions")
    paper, _ = reference_forward(block, x)
    with torch.no_grad():
        delta = (block(x) - x).numpy()
    np.testing.assert_allclose(delta, expected - x.numpy(), rtol=1e-9, atol=1e-9)
    # Not the paper's: the non-local term is N'/N times the paper's C(x_hat) one.
    assert np.abs(delta - (paper - x.numpy())).max() > 1e-3


@pytest.mark.parametrize("impl", ["naive", "auto"])
def test_without_w_z_bias(impl):
    x = torch.randn(2, C, 2, 5, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    block = randomise(make("dot_product", "spacetime", "after", True, False, impl, W_z_bias=False)).double().eval()
    assert block.W_z.bias is None
    assert sum(p.numel() for p in block.parameters()) == sum(
        p.numel() for p in make("dot_product", "spacetime", "after", True, False).parameters()) - C
    expected, _ = reference_forward(block, x)
    with torch.no_grad():
        np.testing.assert_allclose((block(x) - x).numpy(), expected - x.numpy(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("inst", INSTANTIATIONS)
@pytest.mark.parametrize("shape", [(1, C, 1, 5, 7), (1, C, 3, 3, 5), (1, C, 9), (1, C, 5, 3)])
def test_odd_shapes_single_frame_and_lower_ranks_float32(inst, shape):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(2))
    pool = (1, 2, 2) if len(shape) == 5 else (2,) * (len(shape) - 2)
    block = randomise(
        NonLocalBlock(C, instantiation=inst, inner_channels=4, pool_kernel=pool)
    ).eval()
    expected, _ = reference_forward(block, x)
    with torch.no_grad():
        out = block(x)
    assert out.shape == x.shape and out.dtype == torch.float32
    np.testing.assert_allclose((out - x).double().numpy(), expected - x.double().numpy(), rtol=1e-4, atol=1e-5)


def test_train_mode_bn_uses_batch_statistics():
    x = torch.randn(3, C, 2, 3, 5, dtype=torch.float64)
    block = randomise(make("embedded_gaussian", "spacetime", "after", True, False)).double().train()
    expected, _ = reference_forward(block, x, bn_training=True)
    out = block(x)
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("inst", INSTANTIATIONS)
@pytest.mark.parametrize("mode", ["spacetime", "space", 2])
def test_fast_path_gradients_match_naive(inst, mode):
    x = torch.randn(2, C, 4, 3, 5, dtype=torch.float64)
    naive = randomise(make(inst, mode, "after", True, False, impl="naive")).double()
    fast = randomise(make(inst, mode, "after", True, False, impl="fast")).double()
    grads = []
    for block in (naive, fast):
        xi = x.clone().requires_grad_()
        (block(xi) ** 2).sum().backward()
        grads.append([xi.grad] + [p.grad for p in block.parameters()])
    for g_naive, g_fast in zip(*grads):
        torch.testing.assert_close(g_fast, g_naive, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("inst", INSTANTIATIONS)
@pytest.mark.parametrize("order", ["after", "before"])
def test_gradcheck_every_path(inst, order):
    torch.manual_seed(3)
    x = torch.randn(1, 4, 2, 3, 5, dtype=torch.float64, requires_grad=True)
    for impl in ("naive", BY_NAME[inst].fast, "auto"):
        block = randomise(
            NonLocalBlock(4, instantiation=inst, inner_channels=3, subsample_order=order, impl=impl)
        ).double().eval()
        assert torch.autograd.gradcheck(block, (x,), eps=1e-6, atol=1e-5)


def test_concatenation_gradients_on_a_large_group():
    # The sorted scan has a hand-written backward: check it where many (i, j) pairs are active and
    # many are cut by the ReLU.
    from nlbench.ops import pairwise

    gen = torch.Generator().manual_seed(4)
    a = torch.randn(3, 200, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(3, 150, dtype=torch.float64, generator=gen, requires_grad=True)
    v = torch.randn(3, 150, 7, dtype=torch.float64, generator=gen, requires_grad=True)
    grad_y = torch.randn(3, 200, 7, dtype=torch.float64, generator=gen)
    grads = []
    for fn in (pairwise.concatenation_naive, pairwise.concatenation_sorted):
        out = fn(a, b, v, 11.0)
        out = out[0] if isinstance(out, tuple) else out
        grads.append(torch.autograd.grad(out, (a, b, v), grad_y))
    for g_naive, g_fast in zip(*grads):
        torch.testing.assert_close(g_fast, g_naive, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("init", ["paper", "caffe2", "zero_conv", "pytorch"])
@pytest.mark.parametrize("inst", INSTANTIATIONS)
def test_fresh_block_is_identity(init, inst):
    x = torch.randn(2, C, 2, 5, 7)
    block = NonLocalBlock(C, instantiation=inst, init=init)
    assert (block.bn is None) == (init == "zero_conv")
    for training in (True, False):
        block.train(training)
        assert torch.equal(block(x), x)


def test_init_presets_differ_as_documented():
    paper = NonLocalBlock(512, init="paper")
    caffe2 = NonLocalBlock(512, init="caffe2")
    # MSRA fan_out for a 1x1x1 conv 512 -> 256: std = sqrt(2 / 256).
    assert paper.theta.weight.std().item() == pytest.approx((2 / 256) ** 0.5, rel=0.05)
    assert caffe2.theta.weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert torch.count_nonzero(NonLocalBlock(8, init="zero_conv").W_z.weight) == 0


def _poked(inst, mode, x, where):
    """z of a block with random weights (float64, pooled after phi/g) at x, and at x with 5 added at ``where``."""
    block = randomise(make(inst, mode, "after", True, False)).double().eval()
    x2 = x.clone()
    x2[where] += 5.0
    with torch.no_grad():
        return block(x), block(x2)


@pytest.mark.parametrize("inst", INSTANTIATIONS)
def test_space_only_does_not_mix_frames(inst):
    torch.manual_seed(0)  # concatenation's ReLU may silence a pair for unlucky weights
    y0, y1 = _poked(inst, "space", torch.randn(1, C, 4, 5, 7, dtype=torch.float64), (0, slice(None), 3))
    assert torch.equal(y0[:, :, :3], y1[:, :, :3])
    assert not torch.allclose(y0[:, :, 3], y1[:, :, 3])


@pytest.mark.parametrize("inst", INSTANTIATIONS)
def test_time_only_does_not_mix_locations(inst):
    torch.manual_seed(0)  # concatenation's ReLU may silence a pair for unlucky weights
    y0, y1 = _poked(inst, "time", torch.randn(1, C, 4, 5, 7, dtype=torch.float64), (0, slice(None), 0, 2, 3))
    changed = (y0 != y1).any(dim=1)[0]  # (T, H, W)
    assert changed[:, 2, 3].all()  # every frame at the same location hears it
    changed[:, 2, 3] = False
    assert not changed.any()


@pytest.mark.parametrize("inst", INSTANTIATIONS)
def test_spacetime_reaches_far_positions(inst):
    x = torch.randn(1, C, 4, 6, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    y0, y1 = _poked(inst, "spacetime", x, (0, slice(None), 0, 0, 0))
    # The last frame hears the first frame's corner (for concatenation, at the positions whose
    # ReLU lets that key through).
    assert (y0[0, :, -1] - y1[0, :, -1]).abs().max() > 1e-4


def test_temporal_groups_stay_inside_their_group():
    y0, y1 = _poked("embedded_gaussian", 2, torch.randn(1, C, 4, 4, 4, dtype=torch.float64), (0, slice(None), 0, 0, 0))
    assert torch.equal(y0[:, :, 2:], y1[:, :, 2:])
    assert not torch.allclose(y0[:, :, 1], y1[:, :, 1])


@pytest.mark.parametrize("inst", INSTANTIATIONS)
def test_returned_attention_matches_reference(inst):
    x = torch.randn(1, C, 2, 3, 5, dtype=torch.float64)
    block = randomise(make(inst, "spacetime", "after", True, False)).double().eval()
    _, ref = reference_forward(block, x)
    with torch.no_grad():
        out, weights = block(x, return_attention=True)
    assert weights.shape == (1, 1, 2 * 3 * 5, 2 * 1 * 2)
    positions = list(itertools.product(range(2), range(3), range(5)))
    keys = list(itertools.product(range(2), range(1), range(2)))
    expected = np.array([[ref[0][i][j] for j in keys] for i in positions])
    np.testing.assert_allclose(weights[0, 0].numpy(), expected, rtol=1e-10, atol=1e-12)
    if inst in ("gaussian", "embedded_gaussian"):
        torch.testing.assert_close(weights.sum(-1), torch.ones(1, 1, 30, dtype=torch.float64))
    torch.testing.assert_close(out, block(x))


def test_record_attention_keeps_weights_per_group():
    block = NonLocalBlock(C, mode="space")
    block.record_attention = True
    block(torch.randn(2, C, 3, 4, 6))
    assert block.attention.shape == (2, 3, 4 * 6, 2 * 3)


def test_named_submodules_and_w_f_halves():
    block = NonLocalBlock(8, instantiation="concatenation", inner_channels=3)
    assert block.theta.weight.shape == (3, 8, 1, 1, 1)
    assert block.W_z.weight.shape == (8, 3, 1, 1, 1)
    assert block.w_f.weight.shape == (1, 6)
    assert NonLocalBlock(8, instantiation="gaussian").theta is None
    # Zero the phi half of w_f: f_ij = ReLU(w_theta . theta_i) no longer depends on j.
    randomise(block)
    with torch.no_grad():
        block.w_f.weight[0, 3:] = 0
    _, weights = block.eval()(torch.randn(1, 8, 2, 4, 4), return_attention=True)
    assert torch.allclose(weights, weights[..., :1].expand_as(weights))


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("inst", INSTANTIATIONS)
def test_presets_set_the_documented_knobs(name, inst):
    p = PRESETS[name]
    block = NonLocalBlock.from_preset(name, 16, instantiation=inst)
    assert block.subsample_order == p.subsample_order and block.init == p.init and block.norm_by == p.norm_by
    assert (block.W_z.bias is not None) == p.W_z_bias
    d_k = 16 if inst == "gaussian" else 8
    assert block.scale == pytest.approx(d_k**-0.5 if inst in p.scaled else 1.0)
    x = torch.randn(1, 16, 2, 4, 6, dtype=torch.float64)
    randomise(block).double().eval()
    expected, _ = reference_forward(block, x)
    np.testing.assert_allclose(block(x).detach().numpy(), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", ["released", "slowfast", "mmcv", "mmaction2"])
def test_no_preset_scales_dot_product_or_concatenation(name):
    # Caffe2, SlowFast, pytorchvideo and mmcv apply d^-0.5 inside their softmax branch only.
    for inst in ("dot_product", "concatenation"):
        assert NonLocalBlock.from_preset(name, 16, instantiation=inst).scale == 1.0


def test_preset_overrides_win():
    block = NonLocalBlock.from_preset("released", 16, instantiation="concatenation", subsample_order="after")
    assert block.scale == 1.0 and block.subsample_order == "after"
    assert NonLocalBlock.from_preset("released", 16, scale=False).scale == 1.0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(instantiation="softmax"), "instantiation='softmax'"),
        (dict(mode="spatial"), "mode='spatial'"),
        (dict(mode=0), "mode=0"),
        (dict(subsample_order="during"), "subsample_order='during'"),
        (dict(init="xavier"), "init='xavier'"),
        (dict(impl="sorted"), "impl='sorted'"),
        (dict(instantiation="concatenation", scale=True), "scale=True"),
        (dict(pool_kernel=(0, 2, 2)), "pool_kernel"),
        (dict(inner_channels=0), "inner_channels=0"),
        (dict(norm_by="mean"), "norm_by='mean'"),
        (dict(mode=3, pool_kernel=(2, 2, 2)), "pool_kernel"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs, match):
    with pytest.raises(ValueError, match=match.replace("(", r"\(").replace(")", r"\)")):
        NonLocalBlock(8, **kwargs)


@pytest.mark.parametrize(
    "x,kwargs,match",
    [
        (torch.randn(2, 8), {}, "3-D"),
        (torch.randn(1, 2, 8, 2, 2, 2), {}, "3-D"),
        (torch.randn(1, 4, 2, 4, 4), {}, "4 channels but in_channels=8"),
        (torch.randn(1, 8, 2, 1, 4), {}, "pool_kernel"),
        (torch.randn(1, 8, 3, 4, 4), dict(mode=2), "does not divide T=3"),
    ],
)
def test_bad_inputs_raise_value_error_naming_them(x, kwargs, match):
    with pytest.raises(ValueError, match=match):
        NonLocalBlock(8, **kwargs)(x)
