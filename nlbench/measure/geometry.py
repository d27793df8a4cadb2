"""What each placed block of a model attends over at a given input: its input map and its keys.

The input map is measured, not derived from the spec: one forward of a zero clip through a copy of the model
(eval mode), with a hook on every placed block reading the (T, H, W) it receives. The keys are what the block
says it attends over at that map (its ``keys`` member, nlbench.ops.registry; for the non-local block after
subsampling, checked against its recorded attention in tests/test_blocks.py). The model itself is
untouched.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from nlbench.ops.registry import block_keys, placed_blocks


def nonlocal_geometry(model: nn.Module, input_shape: tuple[int, int, int, int]) -> list[dict]:
    """``[{"name": "layer3.nonlocal4", "input_thw": [T, H, W], "keys": K}, ...]`` in network order for an
    input clip of ``input_shape`` (C, T, H, W); [] for a model without placed blocks. ``keys`` is None for a
    block that does not say (no ``keys`` member)."""
    probe = copy.deepcopy(model).cpu().float().eval()
    blocks = placed_blocks(probe)
    if not blocks:
        return []
    seen: dict[str, list[int]] = {}

    def record_input(name: str):
        def hook(module, args):
            seen[name] = [int(n) for n in args[0].shape[2:]]
        return hook

    handles = [m.register_forward_pre_hook(record_input(name)) for name, m in blocks.items()]
    try:
        with torch.no_grad():
            probe(torch.zeros(1, *input_shape))
    finally:
        for h in handles:
            h.remove()
    return [{"name": name, "input_thw": seen[name], "keys": block_keys(m, seen[name])} for name, m in blocks.items()]


__all__ = ["nonlocal_geometry"]
