"""Latency, peak memory and whole-module profiles."""
import pytest
import torch

from nlbench import NonLocalBlock
from nlbench.measure import count_flops, measure_latency, peak_memory_mb, profile_module


def test_peak_memory_sees_a_temporary_that_is_freed_inside():
    def fn():
        big = torch.ones(25 * 2**20 // 4)  # 25 MiB, freed before fn returns
        return big.sum()

    assert peak_memory_mb(fn) == pytest.approx(25.0, abs=0.5)


def test_peak_memory_grows_with_what_the_call_allocates():
    small = peak_memory_mb(lambda: torch.zeros(2**18).add_(1))
    large = peak_memory_mb(lambda: torch.zeros(2**22).add_(1))
    assert large == pytest.approx(16 * small, rel=0.05)


def test_latency_reports_each_statistic_and_rejects_no_repeats():
    stats = measure_latency(lambda: torch.randn(64, 64) @ torch.randn(64, 64), warmup=1, repeats=4)
    assert stats["repeats"] == 4 and 0 < stats["min_ms"] <= stats["median_ms"] <= stats["max_ms"]
    with pytest.raises(ValueError, match="repeats"):
        measure_latency(lambda: None, repeats=0)


def test_latency_times_each_call_at_the_process_thread_count():
    import time

    before, seen = torch.get_num_threads(), []
    torch.set_num_threads(2)  # not the benchmark Timer's default of one
    try:
        stats = measure_latency(lambda: (seen.append(torch.get_num_threads()), time.sleep(0.02)), warmup=0, repeats=3)
        assert set(seen) == {2} and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert 20 <= stats["min_ms"] and stats["median_ms"] < 20 * 10  # a loaded machine may stretch a sleep


def test_profile_of_a_block_agrees_with_count_flops_and_restores_mode():
    block = NonLocalBlock(16, inner_channels=8)
    block.eval()
    prof = profile_module(block, (16, 2, 6, 6), train_batch=2, repeats=1)
    assert prof.params == sum(p.numel() for p in block.parameters())
    assert prof.gflops * 1e9 == count_flops(block, torch.randn(1, 16, 2, 6, 6)).total
    assert prof.unsupported_ops == {}
    assert set(prof.timings_ms) == {"fwd_b1", "fwd_b2", "fwd_bwd_b1", "fwd_bwd_b2"}
    assert prof.peak_mem_mb > 0 and not block.training
    assert all(p.grad is None for p in block.parameters())
