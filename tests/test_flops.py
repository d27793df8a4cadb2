"""MAC counts: every path of the non-local block costs what the naive N x N' path costs, and that is the
analytic count of docs/paper.md section 5's convention."""
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nlbench.measure import NO_MAC_OPS, count_flops, nonlocal_block_macs
from nlbench.ops.instantiations import BY_NAME
from nlbench.ops.nonlocal_block import INSTANTIATIONS, NonLocalBlock

C = 16
# Odd H and W: the 2x2 max pool drops a row and a column (floor mode), which the formula must follow.
X5 = torch.randn(2, C, 4, 7, 9)
MODES = ("spacetime", "space", "time", 2)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # The tensors here are tiny: intra-op threads only add synchronisation, which dominates the run
    # time on a loaded machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _counted(block, x):
    result = count_flops(block, x)
    assert result.unsupported == {}, result.unsupported
    return result.total


@pytest.mark.parametrize(
    "instantiation, mode, subsample, order",
    list(itertools.product(INSTANTIATIONS, MODES, (True, False), ("after", "before"))),
)
def test_block_count_matches_formula_on_every_path(instantiation, mode, subsample, order):
    kwargs = dict(instantiation=instantiation, mode=mode, subsample=subsample, subsample_order=order)
    # "auto" may run either path (nlbench.ops.dispatch): force the fast path by name too, so that its op
    # handler is exercised in every mode.
    impls = ["naive", "auto", BY_NAME[instantiation].fast]
    totals = {impl: _counted(NonLocalBlock(C, impl=impl, **kwargs), X5) for impl in impls}
    expected = nonlocal_block_macs(NonLocalBlock(C, **kwargs), X5.shape)
    assert totals == {impl: expected for impl in totals}


@pytest.mark.parametrize("instantiation", INSTANTIATIONS)
@pytest.mark.parametrize(
    "shape, mode, pool_kernel",
    [
        ((2, C, 15), "spacetime", 2),  # 3-D: (N, C, L), pooled along L
        ((2, C, 15), "time", 2),  # a single "frame" per position: pool is a no-op
        ((2, C, 7, 9), "spacetime", (1, 2, 2)),
        ((2, C, 7, 9), "space", (1, 2, 2)),
    ],
)
def test_block_count_on_3d_and_4d_inputs(instantiation, shape, mode, pool_kernel):
    x = torch.randn(shape)
    kwargs = dict(instantiation=instantiation, mode=mode, pool_kernel=pool_kernel)
    expected = nonlocal_block_macs(NonLocalBlock(C, **kwargs), x.shape)
    for impl in ("naive", BY_NAME[instantiation].fast):
        assert _counted(NonLocalBlock(C, impl=impl, **kwargs), x) == expected


def test_formula_by_hand():
    """Spacetime embedded Gaussian on (2, 16, 4, 7, 9), 1x2x2 pool after phi/g: the numbers written out."""
    b, c, d, p, p_keys = 2, 16, 8, 4 * 7 * 9, 4 * 3 * 4
    expected = (
        3 * b * p * c * d  # theta, phi, g on all positions
        + b * p * p_keys * (d + d)  # theta^T phi, then (.) g
        + b * p * d * c  # W_z
        + 2 * b * c * p  # eval BN, as fvcore charges it
    )
    block = NonLocalBlock(c, instantiation="embedded_gaussian")
    assert nonlocal_block_macs(block, X5.shape) == expected
    result = count_flops(block, X5)
    assert result.total == expected
    assert result.by_module["bn"] == 2 * b * c * p
    assert result.by_operator["scaled_dot_product_attention"] == b * p * p_keys * 2 * d
    assert result.gflops == pytest.approx(expected / 1e9)


def test_zero_conv_block_has_no_bn_charge():
    block = NonLocalBlock(C, init="zero_conv")
    assert block.bn is None
    assert _counted(block, X5) == nonlocal_block_macs(block, X5.shape)
    with_bn = nonlocal_block_macs(NonLocalBlock(C), X5.shape)
    assert with_bn - nonlocal_block_macs(block, X5.shape) == 2 * X5.numel()


class _Attention(nn.Module):
    def __init__(self, fused: bool):
        super().__init__()
        self.fused = fused

    def forward(self, q, k, v):
        if self.fused:
            return F.scaled_dot_product_attention(q, k, v)
        weights = torch.softmax(q @ k.transpose(-1, -2) * 8**-0.5, dim=-1)
        return weights @ v


def test_sdpa_counts_like_the_unfused_attention():
    q, k, v = torch.randn(2, 4, 10, 8), torch.randn(2, 4, 12, 8), torch.randn(2, 4, 12, 6)
    fused = count_flops(_Attention(fused=True), (q, k, v))
    unfused = count_flops(_Attention(fused=False), (q, k, v))
    assert fused.total == 2 * 4 * 10 * 12 * (8 + 6)
    assert unfused.total == fused.total
    assert fused.unsupported == {} and unfused.unsupported == {}


class _Matmul(nn.Module):
    def forward(self, a, b):
        return torch.matmul(a, b)


@pytest.mark.parametrize(
    "a, b, macs",
    [
        ((5, 8), (8,), 5 * 8),  # matrix @ vector: fvcore's own handler raises here
        ((8,), (3, 8, 5), 3 * 8 * 5),
        ((10, 8), (3, 8, 5), 3 * 10 * 8 * 5),  # the first operand broadcast over b's batch
        ((2, 10, 8), (8, 5), 2 * 10 * 8 * 5),
    ],
)
def test_matmul_follows_torch_matmul_shapes(a, b, macs):
    assert count_flops(_Matmul(), (torch.randn(a), torch.randn(b))).total == macs


class _HandWrittenContraction(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(8))

    def forward(self, x):
        # A dot product fvcore cannot see: mul is free, but the sum must be reported.
        return (x * self.w).sum(-1) + torch.mv(x, self.w)


def test_ops_without_handler_stay_unsupported():
    assert "aten::sum" not in NO_MAC_OPS
    result = count_flops(_HandWrittenContraction(), torch.randn(5, 8))
    assert result.unsupported == {"aten::sum": 1, "aten::mv": 1}
    assert result.total == 0


def test_training_flags_are_restored():
    block = NonLocalBlock(C).train()
    block.g.eval()  # a submodule frozen inside a training model must stay frozen
    running_mean = block.bn.running_mean.clone()
    result = count_flops(block, X5)
    assert block.training and block.bn.training and not block.g.training
    # Counted in eval mode: the eval BN charge, and the running statistics were not updated.
    assert result.total == nonlocal_block_macs(block, X5.shape)
    assert torch.equal(block.bn.running_mean, running_mean)


def test_single_tensor_and_tuple_inputs_agree():
    block = NonLocalBlock(C)
    assert count_flops(block, X5).total == count_flops(block, (X5,)).total
