"""What each non-local block of a model attends over at a given input: its input map and its keys.

Measured, not derived from the spec: one forward of a zero clip through a copy of the model (eval mode),
with a forward hook on every ``NonLocalBlock`` reading the (T, H, W) it receives and the number of keys its
pairwise weights have after subsampling (the last axis of the weights the block records). The model itself
is untouched.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from nlbench.ops.nonlocal_block import NonLocalBlock


def nonlocal_geometry(model: nn.Module, input_shape: tuple[int, int, int, int]) -> list[dict]:
    """``[{"name": "layer3.nonlocal4", "input_thw": [T, H, W], "keys": K}, ...]`` in network order for an
    input clip of ``input_shape`` (C, T, H, W); [] for a model without non-local blocks."""
    probe = copy.deepcopy(model).cpu().float().eval()
    blocks = {name: m for name, m in probe.named_modules() if isinstance(m, NonLocalBlock)}
    if not blocks:
        return []
    seen: dict[str, list[int]] = {}

    def record_input(name: str):
        def hook(module, args):
            seen[name] = [int(n) for n in args[0].shape[2:]]
        return hook

    handles = [m.register_forward_pre_hook(record_input(name)) for name, m in blocks.items()]
    for m in blocks.values():
        m.record_attention = True  # (N, groups, positions, keys): the keys as the block computes them
    try:
        with torch.no_grad():
            probe(torch.zeros(1, *input_shape))
    finally:
        for h in handles:
            h.remove()
    return [{"name": name, "input_thw": seen[name], "keys": int(m.attention.shape[-1])} for name, m in blocks.items()]


__all__ = ["nonlocal_geometry"]
