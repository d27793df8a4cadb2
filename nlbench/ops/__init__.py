"""Operators: the non-local block and its pairwise kernels."""
from nlbench.ops.nonlocal_block import INSTANTIATIONS, MODES, PRESETS, NonLocalBlock, Preset

__all__ = ["NonLocalBlock", "PRESETS", "Preset", "INSTANTIATIONS", "MODES"]
