"""Wall-clock latency and peak memory of any zero-argument callable.

Used by the block benchmarks (benchmarks/) and by whole-model profiling, so nothing here knows what
``fn`` does: it may run a forward, a forward + backward or a training step, on CPU or CUDA.

``device`` picks how to synchronise and where to read memory. ``None`` means CUDA if CUDA has already
been initialised in this process (a model that lives on the GPU initialises it), else CPU.
"""
from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time
from typing import Callable

import torch
from torch.utils import benchmark

MiB = 2**20


def _resolve_device(device) -> torch.device:
    if device is None:
        cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
        return torch.device("cuda" if cuda else "cpu")
    return torch.device(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_latency(
    fn: Callable[[], object],
    *,
    warmup: int = 2,
    repeats: int = 10,
    device=None,
) -> dict[str, float]:
    """Time ``repeats`` calls of ``fn`` after ``warmup`` untimed ones; milliseconds per call.

    Returns ``{"median_ms", "mean_ms", "min_ms", "max_ms", "repeats"}``. Each call is timed on its own
    so one slow outlier (a page-fault storm, a GC pass) shows in max and leaves the median alone.
    The clock is torch.utils.benchmark.Timer at this process's thread count (its default is one thread);
    its ``timeit`` runs two untimed calls of its own before each timed one, so every timed call is warm.
    """
    if repeats < 1:
        raise ValueError(f"measure_latency: repeats must be >= 1, got {repeats}")
    dev = _resolve_device(device)

    def clock() -> float:
        _sync(dev)  # CUDA kernels run asynchronously: without this the clock stops when the launches return
        return time.perf_counter()

    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, timer=clock, num_threads=torch.get_num_threads())
    for _ in range(warmup):
        fn()
    times = [timer.timeit(number=1).median * 1e3 for _ in range(repeats)]
    return {
        "median_ms": statistics.median(times),
        "mean_ms": statistics.fmean(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "repeats": repeats,
    }


def _cpu_allocation_events(prof) -> list[tuple[int, int]]:
    """(time ns, bytes) of every CPU allocation (+) and free (-) the profiler recorded.

    Private fields, on purpose: torch has no public reader of the CPU allocation log (its memory timeline
    export reads the same tree; key_averages folds and nets the sizes, see _cpu_peak_bytes), and no library
    measures a CPU peak per call. tests/test_measure.py pins the figure to known allocations, so a torch that
    moves these fields fails there, not silently."""
    from torch._C._profiler import _EventType

    events = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        event = stack.pop()
        stack.extend(event.children)
        if event.tag == _EventType.Allocation and event.extra_fields.device.type == "cpu":
            events.append((event.start_time_ns, event.extra_fields.alloc_size))
    events.sort(key=lambda e: e[0])
    return events


@contextlib.contextmanager
def _quiet_stderr():
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _cpu_peak_bytes(fn: Callable[[], object]) -> int:
    # The raw allocation records are used rather than FunctionEvent.cpu_memory_usage from
    # prof.events(): the latter folds each allocation into the op that made it AND into every op
    # enclosing that one (aten::ones and its aten::empty both report the bytes), so summing it
    # double-counts, and an op's net figure hides a temporary it allocated and freed inside itself.
    from torch.profiler import ProfilerActivity, profile

    prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    # The profiler's C++ side prints start/stop banners straight to fd 2; fn itself keeps stderr.
    with _quiet_stderr():
        prof.__enter__()
    try:
        fn()
    finally:
        with _quiet_stderr():
            prof.__exit__(None, None, None)
    running = peak = 0
    for _, nbytes in _cpu_allocation_events(prof):
        running += nbytes
        peak = max(peak, running)
    return peak


def peak_memory_mb(fn: Callable[[], object], device=None) -> float:
    """Peak memory allocated during one call of ``fn``, beyond what was allocated before it, in MiB.

    Whatever ``fn`` returns is dropped after the call, but it still counts toward the peak while
    alive. The result is the high-water mark relative to the start, never below 0.
    CUDA: the caching allocator's own peak counter; freeing memory allocated before the call lowers
    the running total. CPU: the profiler's allocation records, summed in time order; the profiler
    cannot size a block allocated before it started, so such frees are not seen and the figure is
    the peak of what the call itself allocated (an upper bound when fn frees older tensors).
    """
    dev = _resolve_device(device)
    if dev.type == "cuda":
        _sync(dev)
        before = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        fn()
        _sync(dev)
        return max(0, torch.cuda.max_memory_allocated(dev) - before) / MiB
    if dev.type != "cpu":
        raise ValueError(f"peak_memory_mb: device {dev} is not supported (cpu or cuda)")
    return _cpu_peak_bytes(fn) / MiB


__all__ = ["measure_latency", "peak_memory_mb"]
