"""``impl="auto"``: the cost model's choices, the memory budget, and auto computing what naive computes."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from nlbench.ops import NonLocalBlock, dispatch
from nlbench.ops.instantiations import BY_NAME
from nlbench.ops.nonlocal_block import INSTANTIATIONS

CPU = torch.device("cpu")


def problem(instantiation="embedded_gaussian", groups=8, n=784, n_keys=196, d_k=512, d_v=512, *, grad=True,
            device=CPU, dtype=torch.float32) -> dispatch.Problem:
    return dispatch.Problem(instantiation, groups, n, n_keys, d_k, d_v, dtype, device, grad)


@pytest.fixture
def budget():
    """Set the memory budget for one test; the default comes back afterwards."""
    yield dispatch.set_memory_budget
    dispatch.set_memory_budget(None)


# ---------------------------------------------------------------------------------------------- choices


@pytest.mark.parametrize("grad", [True, False])
@pytest.mark.parametrize("instantiation", ["dot_product", "concatenation"])
def test_tiny_groups_run_naive(instantiation, grad):
    # The time-only mode at res3: H*W = 784 groups of T = 4 positions per clip, batch 8. The fast paths'
    # per-group work (a d x d matrix per group for dot product, a sort per group for concatenation) costs far
    # more than a 4 x 4 pairwise matrix.
    p = problem(instantiation, groups=8 * 784, n=4, n_keys=4, d_k=256, d_v=256, grad=grad)
    assert dispatch.choose_path(p) == "naive"


@pytest.mark.parametrize("grad", [True, False])
@pytest.mark.parametrize("instantiation", ["embedded_gaussian", "dot_product", "concatenation"])
def test_large_maps_run_fast(instantiation, grad):
    # res3 of a 128-frame clip, subsampled, d = 256: the N x N' matrices are what costs.
    p = problem(instantiation, groups=2, n=12544, n_keys=3136, d_k=256, d_v=256, grad=grad)
    assert dispatch.choose_path(p) == BY_NAME[instantiation].fast


@pytest.mark.parametrize("grad", [True, False])
def test_gaussian_at_res4_runs_naive(grad):
    # d_k = C = 1024 against d_v = 512: SDPA needs v padded to d_k (a third more multiply-adds), and on a CPU
    # that outweighs the softmax passes it saves (reports/performance.md showed auto losing here before).
    assert dispatch.choose_path(problem("gaussian", d_k=1024, d_v=512, grad=grad)) == "naive"


# A problem per instantiation that the cost model runs naive (wide heads for the softmax, tiny groups else).
NAIVE_BY_COST = {
    "gaussian": problem("gaussian", d_k=1024, d_v=512),
    "embedded_gaussian": problem("embedded_gaussian", d_k=1024, d_v=1024),
    "dot_product": problem("dot_product", groups=8 * 784, n=4, n_keys=4, d_k=256, d_v=256),
    "concatenation": problem("concatenation", groups=8 * 784, n=4, n_keys=4, d_k=256, d_v=256),
}


@pytest.mark.parametrize("instantiation", INSTANTIATIONS)
def test_above_the_budget_runs_fast(instantiation, budget):
    p = NAIVE_BY_COST[instantiation]
    budget(p.naive_bytes())  # naive just fits: the cost model decides
    assert dispatch.choose_path(p) == "naive"
    budget(p.naive_bytes() - 1)  # one byte short: the fast path, whatever it costs
    assert dispatch.choose_path(p) == BY_NAME[instantiation].fast


def test_budget_from_environment(monkeypatch):
    monkeypatch.setenv("NLBENCH_NAIVE_MEMORY_BUDGET", "1.5G")
    assert dispatch.memory_budget(CPU) == int(1.5 * 2**30)
    monkeypatch.setenv("NLBENCH_NAIVE_MEMORY_BUDGET", "12345")
    assert dispatch.memory_budget(CPU) == 12345
    monkeypatch.setenv("NLBENCH_NAIVE_MEMORY_BUDGET", "lots")
    with pytest.raises(ValueError, match="NLBENCH_NAIVE_MEMORY_BUDGET='lots'"):
        dispatch.memory_budget(CPU)
    monkeypatch.delenv("NLBENCH_NAIVE_MEMORY_BUDGET")
    assert dispatch.memory_budget(CPU) == int(dispatch.DEFAULT_BUDGET_FRACTION * dispatch.device_memory(CPU))


def test_naive_bytes_counts_the_live_matrices():
    p = problem(groups=2, n=10, n_keys=5, grad=True, dtype=torch.float64)
    assert p.naive_bytes() == dispatch.LIVE_MATRICES[True] * 2 * 10 * 5 * 8


def test_cuda_rule(budget):
    budget(2**40)  # no GPU here to ask for its memory
    cuda = torch.device("cuda")
    for inst in ("gaussian", "embedded_gaussian"):
        assert dispatch.choose_path(problem(inst, d_k=1024, device=cuda)) == "sdpa"
    assert dispatch.choose_path(problem("concatenation", groups=8 * 784, n=4, n_keys=4, device=cuda)) == "sorted"
    # Dot product: fewer multiply-adds wins, (N + N') d_k d_v against N N' (d_k + d_v).
    assert dispatch.choose_path(problem("dot_product", n=784, n_keys=196, device=cuda)) == "naive"
    assert dispatch.choose_path(problem("dot_product", n=3136, n_keys=3136, d_k=256, d_v=256, device=cuda)) == "assoc"


# --------------------------------------------------------------------------------------------- numbers


def _blocks(instantiation, c, **kwargs):
    torch.manual_seed(0)
    naive = NonLocalBlock(c, instantiation=instantiation, impl="naive", **kwargs).double()
    with torch.no_grad():  # a trained block: BN gamma and running statistics away from their init
        naive.bn.weight.uniform_(0.5, 1.5)
        naive.bn.bias.normal_()
        naive.bn.running_mean.normal_()
        naive.bn.running_var.uniform_(0.5, 2.0)
    auto = NonLocalBlock(c, instantiation=instantiation, impl="auto", **kwargs).double()
    auto.load_state_dict(naive.state_dict())
    return naive, auto


# (C, T, H, W, block knobs): a res4-like map, a time-only block (tiny groups), a space-only block.
SHAPES = [
    (12, 2, 6, 5, dict(subsample=True)),
    (10, 3, 4, 4, dict(mode="time", subsample=False)),
    (8, 3, 4, 6, dict(mode="space", subsample=True, subsample_order="before")),
]


@pytest.mark.parametrize("forced", ["fast", "model"])
@pytest.mark.parametrize("shape", SHAPES, ids=["spacetime", "time", "space"])
@pytest.mark.parametrize("instantiation", INSTANTIATIONS)
def test_auto_equals_naive_float64(instantiation, shape, forced, budget, monkeypatch):
    c, t, h, w, knobs = shape
    naive, auto = _blocks(instantiation, c, **knobs)
    if forced == "fast":
        budget(0)  # nothing fits: auto must take the fast path
    ran, called = [], []  # what dispatch chose, and which path of the instantiation the blocks ran
    original = dispatch.choose
    monkeypatch.setattr(dispatch, "choose", lambda *a: ran.append(original(*a)) or ran[-1])
    entry = BY_NAME[instantiation]
    monkeypatch.setitem(BY_NAME, instantiation, dataclasses.replace(
        entry, naive_fn=lambda *a: called.append("naive") or entry.naive_fn(*a),
        fast_fn=lambda *a: called.append(entry.fast) or entry.fast_fn(*a)))
    torch.manual_seed(1)
    x = torch.randn(2, c, t, h, w, dtype=torch.float64, requires_grad=True)
    grad_out = torch.randn_like(x)
    outs = {}
    for name, block in (("naive", naive), ("auto", auto)):
        called.clear()
        block.train()
        x.grad = None
        y = block(x)
        y.backward(grad_out)
        outs[name] = (y.detach(), x.grad.clone(), {k: p.grad.clone() for k, p in block.named_parameters()})
        block.eval()
        with torch.no_grad():
            outs[name] += (block(x),)
    # The auto block ran the kernel dispatch chose, in train and eval mode alike.
    assert len(ran) == 2 and len(called) == 2
    assert called == ran
    if forced == "fast":
        assert set(ran) == {BY_NAME[instantiation].fast}
    (y_n, gx_n, gp_n, e_n), (y_a, gx_a, gp_a, e_a) = outs["naive"], outs["auto"]
    torch.testing.assert_close(y_a, y_n, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(e_a, e_n, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gx_a, gx_n, rtol=1e-10, atol=1e-12)
    for k in gp_n:
        torch.testing.assert_close(gp_a[k], gp_n[k], rtol=1e-10, atol=1e-12, msg=lambda m, k=k: f"grad of {k}: {m}")
    torch.testing.assert_close(auto.bn.running_mean, naive.bn.running_mean, rtol=1e-10, atol=1e-12)


def test_one_group_trains_naive_when_sdpa_backward_cannot_use_the_threads(monkeypatch):
    # One clip, spacetime: B = 1. The fused backward parallelises over groups only.
    p = problem("embedded_gaussian", groups=1, n=3136, n_keys=784, d_k=256, d_v=256, grad=True)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert dispatch.choose_path(p) == "naive"
    assert dispatch.choose_path(dataclasses.replace(p, groups=2)) == "sdpa"
    assert dispatch.choose_path(dataclasses.replace(p, grad=False)) == "sdpa"  # the forward is not affected


def test_matrices_beyond_the_cache_make_one_clip_train_sdpa(monkeypatch):
    # One 8x56x56 clip at res2, pooled keys: 25088 x 6272 pairs, 600 MB a matrix. Measured on a quiet machine,
    # naive fwd+bwd took 1.7x SDPA's even though SDPA's backward runs on one of the two threads: the naive
    # passes over matrices that big stream from memory. Without the cache term the model picked naive.
    p = problem("embedded_gaussian", groups=1, n=25088, n_keys=6272, d_k=128, d_v=128, grad=True)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert dispatch.choose_path(p) == "sdpa"
    monkeypatch.setattr(dispatch, "CACHE_BYTES", 2**62)
    assert dispatch.choose_path(p) == "naive"


def test_spilled_pairs_are_counted_in_the_inputs_dtype():
    p = problem("embedded_gaussian", groups=1, n=4096, n_keys=2048, d_k=64, d_v=64)  # 8 Mi pairs
    spill32 = dispatch.features(p, "naive")[-1]
    spill64 = dispatch.features(dataclasses.replace(p, dtype=torch.float64), "naive")[-1]
    assert spill32 == p.pairs - dispatch.CACHE_BYTES / 4
    assert spill64 == p.pairs - dispatch.CACHE_BYTES / 8
    assert dispatch.features(dataclasses.replace(p, n=16), "naive")[-1] == 0


def test_flash_forward_balance_counts_rows_per_thread():
    # N = 784: blocks of 256, 256, 256, 16 rows; two threads take two blocks each: 512 against 272 rows.
    p = problem("embedded_gaussian", groups=1, n=784, n_keys=196)
    assert dispatch.flash_forward_balance(p, 2) == pytest.approx(784 / (2 * 512))
    assert dispatch.flash_forward_balance(p, 1) == 1.0
    assert dispatch.flash_forward_balance(dataclasses.replace(p, groups=2), 2) == 1.0  # one clip a thread
    # N = 100: blocks of 32 rows (32, 32, 32, 4); 3 threads take 2, 2 and 0 blocks: 64, 36 and nothing.
    assert dispatch.flash_forward_balance(dataclasses.replace(p, n=100), 3) == pytest.approx(100 / (3 * 64))
    # Time mode, thousands of groups of 4 queries: the threads are evenly loaded.
    assert dispatch.flash_forward_balance(dataclasses.replace(p, groups=784, n=4, n_keys=4), 2) == 1.0


def test_one_clip_inference_at_res4_runs_naive(monkeypatch):
    # 784 x 784, d = 512, one clip, no grad: SDPA's forward keeps one of two threads 77 % busy (measured quiet:
    # SDPA 1.17-1.22x naive's time); with two clips, or one thread, the model prefers SDPA again.
    p = problem("embedded_gaussian", groups=1, n=784, n_keys=784, d_k=512, d_v=512, grad=False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert dispatch.choose_path(p) == "naive"
    assert dispatch.choose_path(dataclasses.replace(p, groups=2)) == "sdpa"
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert dispatch.choose_path(p) == "sdpa"
