"""A model's weights in a memory format, for any block a model may place."""
from __future__ import annotations

import itertools

import torch
from torch import nn


def to_memory_format(module: nn.Module, memory_format: torch.memory_format) -> nn.Module:
    """``module.to(memory_format=...)`` for the 5-D tensors only, in place; returns the module.

    ``Module.to(memory_format=torch.channels_last_3d)`` converts every 4-D and 5-D tensor and refuses a 4-D one
    (channels_last_3d is 5-D only), so one (C, 1, 1, 1) scale in a researcher's block, or a layer norm over
    (C, 1, 1, 1), would stop a channels-last run. The conv weights, which are what the layout is for, are the
    5-D tensors; this converts them exactly as ``Module.to`` does (``.data`` replaced, the same values).
    """
    with torch.no_grad():
        for t in itertools.chain(module.parameters(), module.buffers()):
            if t.dim() == 5:
                t.data = t.data.to(memory_format=memory_format)  # as Module.to: .contiguous() would keep an
                # ambiguous layout (a 1x1x1 kernel is contiguous both ways) where .to() sets channels-last strides
    return module


__all__ = ["to_memory_format"]
