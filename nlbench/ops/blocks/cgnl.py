"""The compact generalized non-local block (Yue et al., "Compact Generalized Non-local Network", NeurIPS 2018;
docs/successors.md), with the dot-product kernel of the authors' ``SpatialCGNL``, over T x H x W.

The non-local block relates positions; CGNL relates every (position, channel) pair of a channel group to every
other. With f the dot product of theta and phi, within a group of c channels and all P = T*H*W positions:

    y_(i,k) = sum_(j,l) theta_(i,k) phi_(j,l) g_(j,l) = theta_(i,k) * sum_(j,l) phi_(j,l) g_(j,l)
    z = x + GN(W_z y)

so the (cP) x (cP) pairwise matrix never forms: its compact form is one scalar per group and clip. W_z is a
grouped 1x1x1 conv and GN a GroupNorm with the same groups, as the authors' code; the GN's affine starts at
zero, so a fresh block is the identity (the authors' ResNet zero-initialises its GroupNorms; this block's
``zero_init_last``).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nlbench.ops.registry import register_block


@register_block("cgnl")
class CompactGeneralizedNonLocal(nn.Module):
    """Compact generalized non-local block, dot-product kernel (the authors' ``SpatialCGNL``).

    Args:
        channels: C of the input.
        inner_channels: channels of theta, phi and g (default C // 2, as the authors' ResNet).
        groups: channel groups of the kernel, W_z and the GroupNorm (the authors': 8).
        scale: divide each group's phi . g by sqrt(c * T * H * W) (the authors' ``use_scale``).
    """

    def __init__(self, channels: int, inner_channels: int | None = None, groups: int = 8, scale: bool = False):
        super().__init__()
        inner = channels // 2 if inner_channels is None else inner_channels
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
            raise ValueError(f"groups={groups!r} is not allowed; expected a positive int")
        if inner < 1 or inner % groups or channels % groups:
            raise ValueError(f"groups={groups} must divide both the input's {channels} channels and the inner "
                             f"{inner} channels")
        self.groups, self.scale = groups, bool(scale)
        self.theta = nn.Conv3d(channels, inner, 1, bias=False)
        self.phi = nn.Conv3d(channels, inner, 1, bias=False)
        self.g = nn.Conv3d(channels, inner, 1, bias=False)
        self.W_z = nn.Conv3d(inner, channels, 1, groups=groups, bias=False)
        self.gn = nn.GroupNorm(groups, channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for conv in (self.theta, self.phi, self.g, self.W_z):
            conv.reset_parameters()  # the authors' module keeps PyTorch's default conv init
        self.zero_init_last()

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.gn.weight)
        nn.init.zeros_(self.gn.bias)

    def keys(self, thw) -> int:
        return math.prod(thw)

    def forward(self, x: Tensor) -> Tensor:
        b = x.shape[0]
        theta, phi, g = (conv(x) for conv in (self.theta, self.phi, self.g))
        shape = theta.shape
        # Channel-major within each group, as the authors' split + view: (N, groups, c * P).
        theta, phi, g = (u.reshape(b, self.groups, 1, -1) for u in (theta, phi, g))
        att = torch.matmul(phi, g.transpose(-1, -2))  # (N, groups, 1, 1): sum_(j,l) phi g
        if self.scale:
            att = att / math.sqrt(theta.shape[-1])
        y = torch.matmul(att, theta).reshape(shape)  # theta scaled by its group's scalar (a matmul, as theirs)
        return x + self.gn(self.W_z(y))

    def extra_repr(self) -> str:
        return f"groups={self.groups}, scale={self.scale}"


__all__ = ["CompactGeneralizedNonLocal"]
