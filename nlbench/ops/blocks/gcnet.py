"""GCNet's simplified non-local block and global context block (Cao et al., "GCNet: Non-local Networks Meet
Squeeze-Excitation Networks and Beyond", ICCVW 2019; docs/successors.md), for video: they pool over T x H x W.

GCNet observes that the non-local block's attention maps are nearly the same for every query, and replaces
the per-query weights by one query-independent map:

    simplified NL (eq. 2):  z_i = x_i + W_v sum_j alpha_j x_j,                alpha = softmax_j(W_k x_j)
    global context (eq. 4): z_i = x_i + W_v2 ReLU(LN(W_v1 sum_j alpha_j x_j))

so the pairwise N x N' term of the non-local block becomes one weighted average per clip, and the transform
is a bottleneck of ``ratio * C`` channels (the GC block) instead of a C x C conv (SNL). The last conv of the
transform starts at zero (GCNet's ``last_zero_init``), so a fresh block is the identity. At T = 1 the
global context block computes exactly what mmcv's ``ContextBlock(pooling_type='att',
fusion_types=('channel_add',))`` does with the same weights (tests/test_successors.py).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nlbench.ops.registry import register_block


def attention_pool(x: Tensor, W_k: nn.Conv3d) -> Tensor:
    """sum_j alpha_j x_j with alpha = softmax over all T*H*W positions of W_k x: (N, C, 1, 1, 1)."""
    b, c = x.shape[:2]
    alpha = F.softmax(W_k(x).flatten(2), dim=-1)  # (N, 1, P)
    # A matmul, not (x * alpha).sum(): the FLOP counter sees the C x P multiply-adds.
    context = torch.matmul(x.flatten(2), alpha.transpose(1, 2))  # (N, C, 1)
    return context.view(b, c, 1, 1, 1)


class _GlobalPooling(nn.Module):
    """What SNL and GC share: W_k, its init, and the geometry (every position sees every position)."""

    def _init_W_k(self) -> None:
        # mmcv's kaiming_init(conv_mask, mode='fan_in'): normal, ReLU gain, zero bias (a softmax ignores it).
        nn.init.kaiming_normal_(self.W_k.weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(self.W_k.bias)

    def keys(self, thw) -> int:
        return math.prod(thw)


@register_block("simplified_nl")
class SimplifiedNonLocal(_GlobalPooling):
    """GCNet's simplified non-local block: one softmax attention map shared by every query, a C x C W_v.

    Args:
        channels: C of the input.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.W_k = nn.Conv3d(channels, 1, 1)
        self.W_v = nn.Conv3d(channels, channels, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self._init_W_k()
        self.W_v.reset_parameters()
        self.zero_init_last()

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.W_v.weight)
        nn.init.zeros_(self.W_v.bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.W_v(attention_pool(x, self.W_k))


@register_block("global_context")
class GlobalContextBlock(_GlobalPooling):
    """GCNet's global context block: SNL's pooling, then a bottleneck transform W_v2 ReLU(LN(W_v1 .)).

    Args:
        channels: C of the input.
        ratio: the bottleneck's channels as a fraction of C (``int(C * ratio)``, as mmcv; GCNet: 1/16 or 1/4).
    """

    def __init__(self, channels: int, ratio: float = 1 / 16):
        super().__init__()
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
            raise ValueError(f"ratio={ratio!r} is not allowed; expected a number in (0, 1]")
        planes = int(channels * ratio)
        if planes < 1:
            raise ValueError(f"ratio={ratio!r} leaves int({channels} * ratio) = 0 channels; expected a larger ratio")
        self.ratio = ratio
        self.W_k = nn.Conv3d(channels, 1, 1)
        self.W_v1 = nn.Conv3d(channels, planes, 1)
        # Over the bottleneck's channels, as mmcv's LayerNorm([planes, 1, 1]); kept 1-D so the model moves to
        # channels_last_3d (which takes only 5-D tensors among 4-D and 5-D ones).
        self.LN = nn.LayerNorm(planes)
        self.W_v2 = nn.Conv3d(planes, channels, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self._init_W_k()
        self.W_v1.reset_parameters()  # mmcv leaves it at PyTorch's default
        self.LN.reset_parameters()
        self.zero_init_last()

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.W_v2.weight)
        nn.init.zeros_(self.W_v2.bias)

    def forward(self, x: Tensor) -> Tensor:
        context = self.W_v1(attention_pool(x, self.W_k))  # (N, r, 1, 1, 1)
        context = self.LN(context.flatten(1)).view(context.shape)
        return x + self.W_v2(F.relu(context))

    def extra_repr(self) -> str:
        return f"ratio={self.ratio:g}"


__all__ = ["GlobalContextBlock", "SimplifiedNonLocal", "attention_pool"]
