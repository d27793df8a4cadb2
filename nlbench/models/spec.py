"""What a video ResNet is, as data: small frozen dataclasses that ``VideoResNet`` builds from.

Every variant of docs/paper.md section 3 (C2D / I3D kernels, paper / released-code pools and strides, where the
non-local blocks go and with which knobs) differs only in the values held here, never in code paths, the
way torchvision's ``models/video/resnet.py`` passes per-stage conv makers to one ``VideoResNet``.
Each dataclass checks its own fields when it is made, so a bad spec fails where it is written.
"""
from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass, replace

import torch
from torch import nn

from nlbench.ops.knobs import BLOCK_KNOBS, KNOBS, PRESET_KNOBS, model_fields, triple
from nlbench.ops.nonlocal_block import PRESETS, NonLocalBlock
from nlbench.ops.registry import DEFAULT_BLOCK, build_block, check_block

# The paper's stage names and the torchvision attribute each one is built as, so that a 2-D ImageNet
# ResNet state dict maps onto the video model by name.
STAGES = ("res2", "res3", "res4", "res5")
LAYER_NAMES = {"res2": "layer1", "res3": "layer2", "res4": "layer3", "res5": "layer4"}
STRIDE_ON = ("1x1", "3x3")
# Where a placed block goes in residual block i: after it (the paper: z = NL(x) on the block's output), or
# inside it, after the branch's last conv and BN and before the shortcut is added (GCNet's placement).
BLOCK_POSITIONS = ("after_block", "in_residual")


def placed_after(stage: str, indices, num_blocks: int, depth: int | None = None) -> tuple[int, ...]:
    """The sorted indices of the residual blocks of ``stage`` (``num_blocks`` of them, in R``depth``) that a
    non-local block follows, checked: each an int in 0..num_blocks-1, none twice. The one check of a placement,
    whether it comes from a model config's ``nl_blocks`` pairs or a hand-written ``StageSpec``."""
    last = num_blocks - 1
    seen: list[int] = []
    for index in indices:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= last:
            in_depth = f" in R{depth}" if depth is not None else ""
            raise ValueError(
                f"nl_blocks: block index {index!r} is past the end of {stage}, which has {num_blocks} "
                f"residual blocks{in_depth} (allowed 0..{last})"
            )
        if index in seen:
            raise ValueError(f"nl_blocks: ({stage!r}, {index}) is listed twice")
        seen.append(index)
    return tuple(sorted(seen))


def _odd_kernel(name: str, value, owner: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1 or value % 2 == 0:
        # An even temporal kernel cannot be centred with symmetric padding, so T would drift.
        raise ValueError(f"{owner}: {name}={value!r} is not allowed; expected an odd positive int")


@dataclass(frozen=True)
class BlockSpec:
    """Temporal kernel sizes of one bottleneck: conv1 is ``t1`` x1x1, conv2 ``t2`` x3x3 (conv3 is always
    1x1x1). C2D is (1, 1); I3D_3x1x1 inflates conv1 (3, 1), I3D_3x3x3 conv2 (1, 3)."""

    t1: int = 1
    t2: int = 1

    def __post_init__(self) -> None:
        _odd_kernel("t1", self.t1, "BlockSpec")
        _odd_kernel("t2", self.t2, "BlockSpec")


@dataclass(frozen=True)
class StageSpec:
    """One residual stage (res2..res5): ``planes`` is the bottleneck width (output ``planes * expansion``),
    ``stride`` the spatial stride of its first block, ``nonlocal_after`` the 0-based indices of the residual
    blocks that a non-local block follows."""

    name: str
    planes: int
    stride: int
    blocks: tuple[BlockSpec, ...]
    nonlocal_after: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.name not in STAGES:
            raise ValueError(f"StageSpec: name={self.name!r} is not allowed; expected one of {STAGES}")
        if not isinstance(self.planes, int) or self.planes < 1:
            raise ValueError(f"StageSpec {self.name}: planes={self.planes!r} is not allowed; expected a positive int")
        if self.stride not in (1, 2):
            raise ValueError(f"StageSpec {self.name}: stride={self.stride!r} is not allowed; expected 1 or 2")
        object.__setattr__(self, "blocks", tuple(self.blocks))
        if not self.blocks or not all(isinstance(b, BlockSpec) for b in self.blocks):
            raise ValueError(f"StageSpec {self.name}: blocks must be a non-empty tuple of BlockSpec")
        object.__setattr__(self, "nonlocal_after", placed_after(self.name, self.nonlocal_after, len(self.blocks)))


class _NonLocalKnobsMethods:
    """The methods of ``NonLocalKnobs``, whose fields come from ``nlbench.ops.knobs.KNOBS``."""

    def __post_init__(self) -> None:
        if isinstance(self.pool_kernel, list):
            object.__setattr__(self, "pool_kernel", tuple(self.pool_kernel))
        for knob in KNOBS:
            value = getattr(self, knob.name)
            if not (knob.preset and value is None):
                knob.validate(value, "NonLocalKnobs")
        if self.inner_ratio is not None and self.inner_channels is not None:
            raise ValueError("inner_channels and inner_ratio are both set; give one")
        # The checks that relate two knobs live in NonLocalBlock: a tiny throwaway block reports a bad
        # combination here, with the block's own one-line message, instead of deep inside model construction.
        inner = self.inner_channels if isinstance(self.inner_channels, int) and self.inner_channels > 0 else 1
        # Its weights are drawn in a fork of torch's global generator: making a config (every run_id, W&B's
        # config of a run) must draw nothing from the stream a run trains with. It did, and a run's numbers
        # depended on whether it was tracked (its W&B line and config compute the run id).
        with torch.random.fork_rng(devices=[]):
            self.resolved("paper").block(2 * inner)

    def resolved(self, preset: str) -> "NonLocalKnobs":
        """These knobs with every None filled from ``NonLocalBlock`` preset ``preset``."""
        if preset not in PRESETS:
            raise ValueError(f"NonLocalKnobs: preset={preset!r} is not allowed; expected one of {tuple(PRESETS)}")
        values = PRESETS[preset].knobs(self.instantiation)
        fill = {k: values[k] for k in PRESET_KNOBS if getattr(self, k) is None}
        return replace(self, **fill) if fill else self

    def kwargs(self) -> dict:
        return {name: getattr(self, name) for name in BLOCK_KNOBS}

    def block(self, channels: int) -> NonLocalBlock:
        kwargs = self.resolved("paper").kwargs()
        if self.inner_ratio is not None:
            kwargs["inner_channels"] = max(1, round(channels * self.inner_ratio))
        return NonLocalBlock(channels, **kwargs)


# One field per knob of nlbench.ops.knobs (the knobs where the paper and its peers differ default to None:
# ModelConfig fills them from its variant's preset, or from nl_preset).
NonLocalKnobs = make_dataclass("NonLocalKnobs", model_fields(), bases=(_NonLocalKnobsMethods,), frozen=True)
NonLocalKnobs.__module__ = __name__  # so it pickles (spawned sweep workers) and prints as nlbench's
NonLocalKnobs.__doc__ = """The keyword arguments every non-local block of a model is built with (see ``NonLocalBlock``).

    ``inner_channels=None`` gives each block half its input channels (the paper's bottleneck: 512 in res4,
    256 in res3); an int fixes it for every block; ``inner_ratio`` sets it as a fraction of each block's C.
    The preset knobs (``nlbench.ops.knobs.PRESET_KNOBS``: scale, subsample_order, norm_by, init, W_z_bias)
    left None follow a ``NonLocalBlock`` preset (``resolved``): ``ModelConfig`` uses its variant's (or its
    ``nl_preset``), so the released-code models pool x before phi and g, the order whose FLOPs reproduce
    Table 2e.
    """


@dataclass(frozen=True)
class BlockChoice:
    """Which block every placement gets and where: ``name`` is a registered block or ``package.module:Name``
    (``nlbench.ops.registry``), built as ``Block(channels, **args)``; the non-local block (the default) takes
    its arguments from ``VideoResNetSpec.nonlocal_knobs`` instead."""

    name: str = DEFAULT_BLOCK
    args: dict = field(default_factory=dict, hash=False)  # a dict has no hash; equality still compares it
    position: str = "after_block"

    def __post_init__(self) -> None:
        if self.position not in BLOCK_POSITIONS:
            raise ValueError(f"block_position={self.position!r} is not allowed; expected one of {BLOCK_POSITIONS}")
        if not isinstance(self.args, dict) or not all(isinstance(k, str) for k in self.args):
            raise ValueError(f"block_args={self.args!r} is not allowed; expected a mapping of argument names")
        if self.name == DEFAULT_BLOCK:
            if self.args:
                raise ValueError(f"block_args={self.args!r} is not allowed with block={DEFAULT_BLOCK!r}: the non-local "
                                 "block's arguments are model keys (instantiation, mode, inner_channels, ...)")
        else:
            check_block(self.name, self.args)

    def build(self, channels: int, knobs: "NonLocalKnobs") -> nn.Module:
        if self.name == DEFAULT_BLOCK:
            return knobs.block(channels)
        return build_block(self.name, channels, self.args)


@dataclass(frozen=True)
class VideoResNetSpec:
    """A whole network (Table 1): stem, res2..res5, head, and the knobs of its non-local blocks.

    Convolutions are padded so that T, H and W shrink only by their strides (k // 2 each side); the max pools
    by (k - 1) // 2, which gives Table 1's sizes for both the paper's 3x3x3 / 3x1x1 kernels and the released
    code's 2x3x3 / 2x1x1. pool2 follows res2 (in Table 1 it strides time only).
    """

    stages: tuple[StageSpec, ...]
    stem_channels: int = 64
    conv1_t: int = 1
    conv1_stride: tuple[int, int, int] = (2, 2, 2)
    pool1_kernel: tuple[int, int, int] = (3, 3, 3)
    pool1_stride: tuple[int, int, int] = (2, 2, 2)
    pool2_kernel: tuple[int, int, int] = (3, 1, 1)
    pool2_stride: tuple[int, int, int] = (2, 1, 1)
    stride_on: str = "1x1"
    expansion: int = 4
    num_classes: int = 400
    dropout: float = 0.5
    # Goyal et al. 2017's zero-gamma: each residual block's last BN starts at 0, so every residual block
    # (like every non-local block) starts as the identity. Off in the paper; the small CPU recipe uses it.
    zero_init_residual: bool = False
    nonlocal_knobs: NonLocalKnobs = field(default_factory=NonLocalKnobs)
    block: BlockChoice = field(default_factory=BlockChoice)

    def __post_init__(self) -> None:
        owner = "VideoResNetSpec"
        object.__setattr__(self, "stages", tuple(self.stages))
        if tuple(s.name for s in self.stages) != STAGES:
            raise ValueError(f"{owner}: stages must be {STAGES} in order, got {tuple(s.name for s in self.stages)}")
        for name in ("stem_channels", "expansion", "num_classes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{owner}: {name}={value!r} is not allowed; expected a positive int")
        _odd_kernel("conv1_t", self.conv1_t, owner)
        for name in ("conv1_stride", "pool1_kernel", "pool1_stride", "pool2_kernel", "pool2_stride"):
            object.__setattr__(self, name, triple(getattr(self, name), name, owner))
        if self.stride_on not in STRIDE_ON:
            raise ValueError(f"{owner}: stride_on={self.stride_on!r} is not allowed; expected one of {STRIDE_ON}")
        if not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"{owner}: dropout={self.dropout!r} is not allowed; expected 0 <= p < 1")
        if not isinstance(self.nonlocal_knobs, NonLocalKnobs):
            raise ValueError(f"{owner}: nonlocal_knobs must be a NonLocalKnobs")
        object.__setattr__(self, "nonlocal_knobs", self.nonlocal_knobs.resolved("paper"))
        if not isinstance(self.block, BlockChoice):
            raise ValueError(f"{owner}: block must be a BlockChoice")

    def stage(self, name: str) -> StageSpec:
        return self.stages[STAGES.index(name)]

    def placement(self) -> tuple[tuple[str, int], ...]:
        """(stage, block index) of every non-local block, in network order."""
        return tuple((s.name, i) for s in self.stages for i in s.nonlocal_after)

    def strides(self) -> dict[str, tuple[int, int, int]]:
        """Total (t, h, w) stride from the input to the output of each stage."""
        t, h, w = (a * b for a, b in zip(self.conv1_stride, self.pool1_stride))
        out = {}
        for s in self.stages:
            if s.name == "res3":  # pool2 sits between res2 and res3
                t, h, w = t * self.pool2_stride[0], h * self.pool2_stride[1], w * self.pool2_stride[2]
            h, w = h * s.stride, w * s.stride
            out[s.name] = (t, h, w)
        return out


__all__ = [
    "BLOCK_POSITIONS", "BlockChoice", "BlockSpec", "LAYER_NAMES", "NonLocalKnobs", "PRESET_KNOBS", "STAGES", "STRIDE_ON", "StageSpec", "VideoResNetSpec",
]
