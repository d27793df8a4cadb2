"""``impl="auto"`` against both exact paths at every non-local block the model zoo runs.

One case per distinct zoo block (``benchmarks.zoo_shapes``: every row of every ablation table at the paper
profile, its per-GPU batch included) and pass: ``train`` is forward + backward in train mode (autograd on, the
cost model's grad=True), ``infer`` a forward in eval mode under ``torch.no_grad()`` (grad=False). The three
impls share their weights and are timed round-robin, naive, fast, auto, every round, so that load from other
jobs on the machine hits all three alike; pytest-benchmark times the auto call, the two others are timed in its
``setup`` and kept in ``extra_info``. A naive path whose N x N' matrices would exceed the memory budget
(``nlbench.ops.dispatch.memory_budget``) is not run: auto must then take the fast path.
"""
from __future__ import annotations

import dataclasses
import os
import statistics
import time

import pytest
import torch

from benchmarks.zoo_shapes import zoo_shapes
from nlbench.ops import NonLocalBlock, dispatch, instantiations

SHAPES = zoo_shapes()
PASSES = ("train", "infer")
# Clips per call. Every feature of the cost model is proportional to the number of groups, but SDPA's CPU
# backward parallelises over groups only, so the choice can differ below `threads` groups; the report also gives
# auto's choice and the memory check at the profile's batch (`profile_batch`, not timed). One clip keeps the
# suite within a quarter of an hour on a loaded 2-core machine;
# NLBENCH_BENCH_BATCH=0 runs each block at its profile's per-GPU batch (8, or 2 for 128-frame clips).
BATCH = int(os.environ.get("NLBENCH_BENCH_BATCH", "1"))
CASES = [(shape, pass_) for shape in SHAPES for pass_ in PASSES]


def _rounds(call_seconds: float) -> int:
    """Interleaved rounds for a case whose calls took ``call_seconds`` each: about 2 s of calls per impl, at
    least 5 and at most 25 (a 20 ms call varies by 5-10 % from round to round on this shared host, and the
    target is 5 %), and 5 for calls of a second or more, so that `make bench` stays within about a quarter of an
    hour."""
    if call_seconds >= 1.0:
        return 5
    return max(5, min(25, round(2.0 / max(call_seconds, 1e-3))))


# The ids are "<label>-<pass>": the report reads the cases a run selected from them (nlbench.report.performance.
# selected_zoo_cases), to name those that wrote no benchmark.
@pytest.mark.parametrize("shape,pass_", CASES, ids=[f"{s.label}-{p}" for s, p in CASES])
def test_zoo_block(benchmark, shape, pass_):
    torch.manual_seed(0)
    fast = instantiations.BY_NAME[shape.instantiation].fast
    blocks = {impl: NonLocalBlock(shape.channels, impl=impl, **shape.block_kwargs()) for impl in ("naive", fast, "auto")}
    torch.nn.init.ones_(blocks["naive"].bn.weight)  # a trained block: no all-zero gradient to exploit
    for block in blocks.values():
        block.load_state_dict(blocks["naive"].state_dict())
        block.train(pass_ == "train")
    batch = BATCH or shape.batch
    x = torch.randn(batch, shape.channels, shape.t, shape.h, shape.w, requires_grad=pass_ == "train")
    grad_out = torch.randn_like(x)

    # What auto runs here, and whether naive fits the budget, as the block itself decides it.
    chosen: list[dispatch.Problem] = []
    original = dispatch.choose

    def record(instantiation, q, k, v):
        chosen.append(dispatch.problem(instantiation, q, k, v))
        return original(instantiation, q, k, v)

    def call(impl: str):
        block = blocks[impl]
        if pass_ == "infer":

            def forward():
                with torch.no_grad():
                    block(x)

            return forward

        def step():
            block.zero_grad(set_to_none=True)
            x.grad = None
            block(x).backward(grad_out)

        return step

    fns = {impl: call(impl) for impl in blocks}
    dispatch.choose = record
    try:
        fns["auto"]()
    finally:
        dispatch.choose = original
    problem = chosen[0]
    auto_path = dispatch.choose_path(problem)
    budget = dispatch.memory_budget(x.device)
    naive_fits = problem.naive_bytes() <= budget
    # The same block at its profile's batch: what auto would run there, and whether naive would fit.
    at_profile = dataclasses.replace(problem, groups=problem.groups // batch * shape.batch)
    if not naive_fits:
        del fns["naive"]

    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    for impl, fn in fns.items():
        if impl != "auto":
            fn()  # warm-up (auto was warmed above)
    rounds = _rounds((time.perf_counter() - start) / max(len(fns) - 1, 1))
    times: dict[str, list[float]] = {impl: [] for impl in fns if impl != "auto"}
    # The order rotates round by round (naive, fast | auto; fast | auto, naive; | auto, naive, fast): a call
    # that always ran first or right after auto would carry whatever the previous call left behind (freed
    # pages, a cold cache) in every round. Impls before auto run in the round's setup, those after in its
    # teardown.
    others = list(times)
    halves: list[tuple[list[str], list[str]]] = []  # per round: the impls before auto, those after it

    def timed(impls):
        for impl in impls:
            t0 = time.perf_counter()
            fns[impl]()
            times[impl].append(time.perf_counter() - t0)

    def before():
        k = len(halves) % (len(others) + 1)  # this round starts k impls into the rotation
        order = others[k:] + others[:k]
        halves.append((order[: len(others) - k], order[len(others) - k:]))
        timed(halves[-1][0])

    def after():
        timed(halves[-1][1])

    benchmark.group = f"zoo {pass_}"
    benchmark.pedantic(fns["auto"], setup=before, teardown=after, rounds=rounds, warmup_rounds=0)

    medians = {impl: statistics.median(ts) for impl, ts in times.items()}
    benchmark.extra_info.update(
        kind="zoo_dispatch",
        device=x.device.type,
        dtype=str(x.dtype).removeprefix("torch."),
        label=shape.label,
        **{k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(shape).items()},
        used_by=SHAPES[shape],
        pass_=pass_,
        grad=problem.grad,
        groups=problem.groups,
        n=problem.n,
        n_keys=problem.n_keys,
        d_k=problem.d_k,
        d_v=problem.d_v,
        fast_path=fast,
        auto_path=auto_path,
        naive_ms=medians.get("naive", float("nan")) * 1e3,
        fast_ms=medians[fast] * 1e3,
        naive_rounds=times.get("naive", []),
        fast_rounds=times[fast],
        naive_bytes=problem.naive_bytes(),
        budget_bytes=budget,
        naive_fits=naive_fits,
        batch_run=batch,
        profile_batch=shape.batch,
        profile_auto_path=dispatch.choose_path(at_profile),
        profile_naive_bytes=at_profile.naive_bytes(),
        profile_naive_fits=at_profile.naive_bytes() <= budget,
        loadavg=[load_before, os.getloadavg()[0]],  # 1-minute load average before and after the case
        cpu_cores=os.cpu_count(),
    )
