"""Measurements: multiply-add counts (docs/paper.md section 5), latency, peak memory, whole profiles."""
from nlbench.measure.flops import NO_MAC_OPS, FlopCount, count_flops, mac_handles, nonlocal_block_macs
from nlbench.measure.geometry import nonlocal_geometry
from nlbench.measure.profile import CostProfile, machine_info, profile_module
from nlbench.measure.timing import measure_latency, peak_memory_mb

__all__ = [
    "FlopCount",
    "NO_MAC_OPS",
    "CostProfile",
    "count_flops",
    "mac_handles",
    "machine_info",
    "measure_latency",
    "nonlocal_block_macs",
    "nonlocal_geometry",
    "peak_memory_mb",
    "profile_module",
]
