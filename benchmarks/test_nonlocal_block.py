"""Latency and peak memory of the non-local block at the paper's shapes: naive path vs fast path.

Every case is one (device, shape, subsample, pass, instantiation, impl), batch 8, float32, block in
train mode (BatchNorm on batch statistics, autograd recording) as in training. ``pass`` is ``fwd`` (the
forward of a training step, graph kept) or ``fwd_bwd`` (forward + backward of a fixed output grad).
Everything the report needs goes into ``benchmark.extra_info``; the report never parses test ids.
"""
from __future__ import annotations

import itertools
import time

import pytest
import torch

from nlbench.measure.flops import nonlocal_block_macs
from nlbench.measure.timing import peak_memory_mb
from nlbench.ops import NonLocalBlock, instantiations

BATCH = 8
DTYPE = torch.float32
# Table 1 of the paper: (C, T, H, W) at the input of a block in that stage, 32-frame clips; the
# 8x28x28 res3 map is the longer-clip case where the N x N pairwise matrix starts to dominate.
SHAPES = {
    "res4_4x14x14": (1024, 4, 14, 14),
    "res3_4x28x28": (512, 4, 28, 28),
    "res3_8x28x28": (512, 8, 28, 28),
}
INSTANTIATIONS = instantiations.NAMES
IMPLS = ("naive", "fast")  # impl="auto" is measured at the zoo shapes: test_zoo_dispatch.py
PASSES = ("fwd", "fwd_bwd")
MATMUL_N = 4096

CASES = list(itertools.product(SHAPES, (False, True), PASSES, INSTANTIATIONS, IMPLS))


def _case_id(case) -> str:
    shape, subsample, pass_, instantiation, impl = case
    return f"{shape}-{'sub' if subsample else 'nosub'}-{pass_}-{instantiation}-{impl}"


def _rounds(call_seconds: float) -> tuple[int, int]:
    """(rounds, warm-up rounds) for a case whose single call took ``call_seconds``.

    Naive forward + backward at res3 8x28x28 without subsampling takes 10-25 s a call on a 2-core CPU;
    three rounds of every case would not fit the suite in 25 minutes. The untimed peak-memory call
    before the rounds already warms the allocator and the kernels, so slow cases skip the warm-up.
    """
    if call_seconds < 3.0:
        return 3, 1
    return 2, 0


def _synced(fn, device: torch.device):
    if device.type != "cuda":
        return fn

    def call():
        fn()
        torch.cuda.synchronize(device)

    return call


def test_matmul(benchmark, device):
    """The machine's dense float32 matmul rate, the yardstick for the block's achieved GFLOP/s."""
    torch.manual_seed(0)
    a = torch.randn(MATMUL_N, MATMUL_N, dtype=DTYPE, device=device)
    b = torch.randn(MATMUL_N, MATMUL_N, dtype=DTYPE, device=device)
    out = torch.empty(MATMUL_N, MATMUL_N, dtype=DTYPE, device=device)
    benchmark.group = f"{device.type} matmul"
    benchmark.pedantic(_synced(lambda: torch.mm(a, b, out=out), device), rounds=5, warmup_rounds=1)
    median_s = benchmark.stats.stats.median
    benchmark.extra_info.update(
        kind="matmul",
        device=device.type,
        dtype=str(DTYPE).removeprefix("torch."),
        n=MATMUL_N,
        gflops=2 * MATMUL_N**3 / median_s / 1e9,
    )


@pytest.mark.parametrize("shape,subsample,pass_,instantiation,impl", CASES, ids=[_case_id(c) for c in CASES])
def test_block(benchmark, device, shape, subsample, pass_, instantiation, impl):
    torch.manual_seed(0)
    c, t, h, w = SHAPES[shape]
    path = "naive" if impl == "naive" else instantiations.BY_NAME[instantiation].fast
    block = NonLocalBlock(c, instantiation=instantiation, subsample=subsample, impl=path)
    # A fresh block has BN gamma = 0 and so is the identity; gamma = 1 stands for a trained block, so
    # no gradient is all zeros (same work for the dense kernels, but nothing degenerate to exploit).
    torch.nn.init.ones_(block.bn.weight)
    block = block.to(device=device, dtype=DTYPE).train()
    x = torch.randn(BATCH, c, t, h, w, device=device, dtype=DTYPE, requires_grad=True)
    grad_out = torch.randn_like(x)

    def forward():
        return block(x)

    def forward_backward():
        # set_to_none, as optimizer.zero_grad() does: each step allocates its gradients afresh.
        block.zero_grad(set_to_none=True)
        x.grad = None
        block(x).backward(grad_out)

    fn = _synced(forward if pass_ == "fwd" else forward_backward, device)

    start = time.perf_counter()
    peak_mb = peak_memory_mb(fn, device=device)
    rounds, warmup = _rounds(time.perf_counter() - start)
    benchmark.group = f"{device.type} {shape} {'sub' if subsample else 'nosub'} {pass_}"
    benchmark.pedantic(fn, rounds=rounds, warmup_rounds=warmup)

    # eq. (1) as written, with the N x N' matrix (the paper's convention), whichever path runs.
    macs = nonlocal_block_macs(block, tuple(x.shape))
    benchmark.extra_info["pass"] = pass_
    benchmark.extra_info.update(
        kind="nonlocal_block",
        device=device.type,
        dtype=str(DTYPE).removeprefix("torch."),
        shape=shape,
        batch=BATCH,
        channels=c,
        thw=[t, h, w],
        subsample=subsample,
        instantiation=instantiation,
        impl=impl,
        path=path,
        peak_mb=peak_mb,
        macs_fwd=macs,
    )
