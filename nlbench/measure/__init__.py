"""Measurements: multiply-add counts (PAPER.md section 5)."""
from nlbench.measure.flops import NO_MAC_OPS, FlopCount, count_flops, mac_handles, nonlocal_block_macs

__all__ = ["FlopCount", "NO_MAC_OPS", "count_flops", "mac_handles", "nonlocal_block_macs"]
