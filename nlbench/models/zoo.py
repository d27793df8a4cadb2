"""The paper's models by name: ``ModelConfig`` turns (depth, arch, non-local preset, width, variant) into a
``VideoResNetSpec`` using the tables below, and ``build_model`` builds it.

Every choice is a row of data (docs/paper.md section 3):

- ``DEPTHS``: residual blocks per stage. ``WIDTHS``: channels of conv1 and of res2's bottleneck (res3..res5
  double it each stage); ``small`` keeps the topology at 1/8 of the channels for CPU work.
- ``ARCHS``: the stem's temporal kernel and which conv an inflated block widens in time.
- ``INFLATION``: which residual blocks of each stage are inflated, as (period, offset): block i is inflated
  when i % period == offset.
- ``VARIANTS``: the released code (video-nonlocal-net ``resnet_video_org.py``, the 32-frame models of the
  paper, and its non-local block) versus the paper's text, mmaction2's ``ResNet3d`` (docs/presets.md) and
  PySlowFast's / pytorchvideo's 8x8 ResNets (their released checkpoints: ``nlbench.models.convert``): the stem's
  pools and temporal strides (``POOLS``), which conv carries a block's stride, the inflation pattern, the
  non-local block's preset.
- ``NL_PRESETS``: how many non-local blocks each stage gets; ``spread`` says which residual blocks they follow.

The default variant is ``released``: the only one whose parameter and FLOP counts reproduce all of Table 2e
(see ``VARIANTS`` and ``tests/test_models.py``); ``variant="paper"`` builds the paper's text.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Annotated, Any

from nlbench.identity import Added
from nlbench.models.resnet import VideoResNet
from nlbench.models.spec import (STAGES, STRIDE_ON, BlockChoice, BlockSpec, NonLocalKnobs, StageSpec, VideoResNetSpec,
                                 placed_after)
from nlbench.ops.knobs import NAMES as KNOB_NAMES
from nlbench.ops.nonlocal_block import PRESETS
from nlbench.ops.registry import DEFAULT_BLOCK

DEPTHS: dict[int, tuple[int, int, int, int]] = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
WIDTHS: dict[str, int] = {"paper": 64, "small": 8}


@dataclass(frozen=True)
class Arch:
    """conv1's temporal kernel, and the BlockSpec of an inflated residual block (C2D inflates nothing)."""

    conv1_t: int
    inflated: BlockSpec


ARCHS: dict[str, Arch] = {
    "c2d": Arch(1, BlockSpec()),
    "i3d_3x3x3": Arch(5, BlockSpec(t2=3)),  # the 3x3 conv becomes 3x3x3
    "i3d_3x1x1": Arch(5, BlockSpec(t1=3)),  # the first 1x1 conv becomes 3x1x1
}

# (period, offset) per stage res2..res5.
INFLATION: dict[str, tuple[tuple[int, int], ...]] = {
    # The paper: "one of every two residual blocks", counted from each stage's first block.
    "every_other": ((2, 0), (2, 0), (2, 0), (2, 0)),
    # The released code's obtain_arc: res2 [1,1,1], res3 [1,0,1,0], res4 [1,0,1,0,...], res5 [0,1,0].
    "released": ((1, 0), (2, 0), (2, 0), (2, 1)),
}
@dataclass(frozen=True)
class Pools:
    """The stem's time geometry: pool1's and pool2's kernels, and the temporal stride of conv1 and pool1 (the
    spatial strides are 2 everywhere; pool2 always strides time by 2)."""

    pool1: tuple[int, int, int]
    pool2: tuple[int, int, int]
    conv1_stride_t: int = 2
    pool1_stride_t: int = 2


POOLS: dict[str, Pools] = {
    "paper": Pools((3, 3, 3), (3, 1, 1)),  # Table 1
    "released": Pools((2, 3, 3), (2, 1, 1)),  # same strides, so the same output sizes
    # mmaction2 ResNet3d: pool1 MaxPool3d((1, 3, 3), stride (pool1_stride_t=2, 2, 2)), pool2 (2, 1, 1).
    "mmaction2": Pools((1, 3, 3), (2, 1, 1)),
    # PySlowFast's ResNet stem (VideoModelStem: conv stride [1, 2, 2], MaxPool3d [1, 3, 3] stride [1, 2, 2];
    # pathway0_pool [2, 1, 1] after res2 for c2d and i3d), which pytorchvideo's create_resnet also builds
    # (stem_conv_stride (1, 2, 2), stem_pool_stride (1, 2, 2), stage1_pool (2, 1, 1)): the 8x8 models keep
    # all 8 frames through res2 and halve time once.
    "slowfast": Pools((1, 3, 3), (2, 1, 1), conv1_stride_t=1, pool1_stride_t=1),
}


@dataclass(frozen=True)
class Variant:
    pools: str  # a key of POOLS
    stride_on: str  # "1x1" or "3x3"
    inflation: str  # a key of INFLATION
    nonlocal_preset: str  # the NonLocalBlock preset that fills the knobs left None


VARIANTS: dict[str, Variant] = {
    # video-nonlocal-net's resnet_video_org.py ("the original model architectures used in the paper") and its
    # non-local block. The default: the only variant whose counts reproduce every number the paper publishes
    # (Table 2e: I3D_3x3x3 params 1.5x needs this inflation pattern, 1.6x with every other block; I3D_3x1x1
    # FLOPs 1.5x needs the stride on the 3x3, 1.4x on the 1x1; NL 5-block FLOPs 1.2x needs x pooled before
    # phi and g, 1.3x after), with R101 C2D at 35.5 G, 3.7% over the paper's 34.2 G.
    "released": Variant(pools="released", stride_on="3x3", inflation="released", nonlocal_preset="released"),
    # The paper's text: Table 1's pools, the original ResNet's stride on the first 1x1 (R101 C2D: 34.5 G,
    # the paper's 34.2 G), "one of every two residual blocks" inflated, the paper's non-local block.
    "paper": Variant(pools="paper", stride_on="1x1", inflation="every_other", nonlocal_preset="paper"),
    # mmaction2 1.x's Kinetics I3D (configs/_base_/models/i3d_r50.py: ResNet3d, conv1 5x7x7 stride 2, pool1
    # 1x3x3, inflate ((1,1,1), (1,0,1,0), (1,0,1,0,1,0), (0,1,0)) in its 3x1x1 style, style='pytorch' = stride
    # on the 3x3; I3DHead dropout 0.5, fc 2048 -> 400) with mmcv NonLocal3d blocks after res3 {1, 3} and
    # res4 {1, 3, 5}. Its published counts (R50 I3D 28.0 M / 43.5 G; NL dot product 35.4 M / 59.3 G, FLOPs
    # at 32x256x256) are reproduced in reports/model_zoo.md.
    "mmaction2": Variant(pools="mmaction2", stride_on="3x3", inflation="released", nonlocal_preset="mmaction2"),
    # PySlowFast's C2D / I3D 8x8 R50 (and its NLN models) and pytorchvideo's hub c2d_r50 / i3d_r50: the stem
    # keeps time (POOLS["slowfast"]), stride on the 3x3 (STRIDE_1X1: False), I3D's temporal kernels on the
    # first 1x1 in the released pattern (_TEMPORAL_KERNEL_BASIS["i3d"]: res2 [3], res3 [3, 1], res4 [3, 1],
    # res5 [1, 3]; pytorchvideo's i3d_r50 stage_conv_a_kernel_size the same), SlowFast's non-local block.
    "slowfast": Variant(pools="slowfast", stride_on="3x3", inflation="released", nonlocal_preset="slowfast"),
}
DEFAULT_VARIANT = "released"

# Non-local blocks per stage for each preset count (nl_stage=None); 1 block goes to nl_stage (default res4).
NL_PRESETS: dict[int, dict[str, int]] = {
    0: {},
    1: {"res4": 1},
    5: {"res3": 2, "res4": 3},
    10: {"res3": 4, "res4": 6},
}


def spread(stage: str, num_blocks: int, count: int) -> tuple[int, ...]:
    """Which of a stage's ``num_blocks`` residual blocks ``count`` non-local blocks follow.

    One block goes right before the stage's last residual block (the paper's 1-block models: R50 res4 after
    block 4, R101 after block 21). More go after every ``p``-th block, ``p = num_blocks // count``, starting
    with block ``p - 1``: the released code's ``idx % p == p - 1``. This gives every placement the paper and
    the released code use: R50 res3 {1, 3} and res4 {1, 3, 5} (5 blocks), all of res3 and res4 (10 blocks),
    R101 res4 {6, 13, 20} (5 blocks). For R101's 10 blocks (res3 + res4 = 4 + 6 as for R50; the paper only
    says "the corresponding residual blocks") it gives res4 {2, 5, 8, 11, 14, 17}, one every third block; the
    released code with LAYER_MOD=1 would instead put 2 in res3 and 7 in res4, 9 blocks in all.
    """
    if not 0 <= count <= num_blocks:
        raise ValueError(
            f"nl_blocks: {count} non-local blocks do not fit in {stage}, which has {num_blocks} residual "
            f"blocks (allowed 0..{num_blocks})"
        )
    if count == 0:
        return ()
    if count == 1:
        return (max(num_blocks - 2, 0),)
    period = num_blocks // count
    return tuple(period - 1 + k * period for k in range(count))


def _option(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed; expected one of {tuple(allowed)}")


@dataclass(frozen=True)
class ModelConfig:
    """Everything ``build_model`` needs, validated when made. Each field's ``help`` says what it sets (the
    flags of ``nlbench profile`` show it)."""

    depth: int = field(default=50, metadata={"help": "50 or 101"})
    arch: str = field(default="c2d", metadata={"help": "c2d, i3d_3x3x3 or i3d_3x1x1"})
    nl_blocks: int | tuple[tuple[str, int], ...] = field(default=0, metadata={"help": (
        "a preset count (0, 1, 5 or 10: Table 2c's models), or explicit (stage, block index) pairs, each "
        "non-local block following that residual block (0-based)")})
    nl_stage: str | None = field(default=None, metadata={"help": (
        "with nl_blocks=1 the stage of the block (res2..res5, Table 2b; default res4); with any other count, "
        "puts all of them in that one stage, spaced by spread (10 in res3 is an error)")})
    width: str | int = field(default="paper", metadata={"help": (
        "paper (64), small (8) or an int: channels of conv1 and of res2's bottleneck")})
    num_classes: int = field(default=400, metadata={"help": "fc outputs (Kinetics-400: 400)"})
    variant: str = field(default=DEFAULT_VARIANT, metadata={"help": (
        "released, paper, mmaction2 or slowfast (see nlbench.models.zoo.VARIANTS); pools, stride_on and "
        "inflation override one part of it each, and so do the non-local knobs")})
    dropout: float = field(default=0.5, metadata={"help": "before the fc (paper: 0.5)"})
    zero_init_residual: bool = field(default=False, metadata={"help": (
        "start each residual block's last BN gamma at 0 (Goyal et al.; not the paper's)")})
    pools: str | None = field(default=None, metadata={"help": (
        "the stem's pool kernels and temporal strides: paper, released, mmaction2 or slowfast; None: the "
        "variant's")})
    stride_on: str | None = field(default=None, metadata={"help": (
        "which conv of a bottleneck strides, 1x1 (the paper) or 3x3 (the released code); None: the variant's")})
    inflation: str | None = field(default=None, metadata={"help": (
        "which residual blocks of I3D get a temporal kernel: every_other (the paper) or released; None: the "
        "variant's")})
    nl_preset: str | None = field(default=None, metadata={"help": (
        "the NonLocalBlock preset that fills the non-local knobs left None; None: the variant's")})
    # Added: keys that came after run ids existed, at the values every earlier run had (nlbench.identity)
    block: Annotated[str, Added(DEFAULT_BLOCK)] = field(default=DEFAULT_BLOCK, metadata={"help": (
        "the block every placement gets: nonlocal (the paper's, default), another registered block (nlbench "
        "blocks: simplified_nl, global_context, cgnl) or a researcher's package.module:Name")})
    # A dict has no hash; equality still compares it.
    block_args: Annotated[dict[str, Any], Added({})] = field(default_factory=dict, hash=False, metadata={"help": (
        "keyword arguments of block (the non-local block's are the knobs instead, and another block ignores "
        "them: a profile's base config may set them for every row)")})
    block_position: Annotated[str, Added("after_block")] = field(default="after_block", metadata={"help": (
        "after_block (the paper: after residual block i) or in_residual (GCNet: after the branch's last conv "
        "and BN, before the shortcut is added)")})
    nonlocal_knobs: NonLocalKnobs = field(default_factory=NonLocalKnobs, metadata={"help": (
        "the keyword arguments of every non-local block")})

    def __post_init__(self) -> None:
        _option("depth", self.depth, DEPTHS)
        _option("arch", self.arch, ARCHS)
        _option("variant", self.variant, VARIANTS)
        if self.pools is not None:
            _option("pools", self.pools, POOLS)
        if self.stride_on is not None:
            _option("stride_on", self.stride_on, STRIDE_ON)
        if self.inflation is not None:
            _option("inflation", self.inflation, INFLATION)
        if self.nl_stage is not None:
            _option("nl_stage", self.nl_stage, STAGES)
        if self.nl_preset is not None:
            _option("nl_preset", self.nl_preset, PRESETS)
        if isinstance(self.width, str):
            _option("width", self.width, WIDTHS)
        elif not isinstance(self.width, int) or isinstance(self.width, bool) or self.width < 1:
            raise ValueError(f"width={self.width!r} is not allowed; expected one of {tuple(WIDTHS)} or a positive int")
        if not isinstance(self.nonlocal_knobs, NonLocalKnobs):
            raise ValueError("nonlocal_knobs must be a NonLocalKnobs")
        if not isinstance(self.nl_blocks, int):
            # Lists from a CLI or a YAML file: stored as tuples so that the config stays hashable.
            object.__setattr__(self, "nl_blocks", tuple(tuple(p) for p in self.nl_blocks))
        self.placement()  # fail here, not at build time
        self.spec()

    # ------------------------------------------------------------------------------------ resolution

    def _variant(self) -> Variant:
        v = VARIANTS[self.variant]
        return replace(
            v,
            pools=self.pools or v.pools,
            stride_on=self.stride_on or v.stride_on,
            inflation=self.inflation or v.inflation,
        )

    def placement(self) -> dict[str, tuple[int, ...]]:
        """Stage -> indices of the residual blocks a non-local block follows."""
        counts = dict(zip(STAGES, DEPTHS[self.depth]))
        nl = self.nl_blocks
        if isinstance(nl, bool) or not isinstance(nl, (int, tuple)):
            raise ValueError(f"nl_blocks={nl!r} is not allowed; expected 0, 1, 5, 10 or (stage, block index) pairs")
        if isinstance(nl, int):
            if self.nl_stage is not None:
                return {self.nl_stage: spread(self.nl_stage, counts[self.nl_stage], nl)} if nl else {}
            if nl not in NL_PRESETS:
                raise ValueError(
                    f"nl_blocks={nl} is not allowed; expected one of {tuple(NL_PRESETS)} (the paper's presets), "
                    f"any count with nl_stage, or (stage, block index) pairs"
                )
            return {s: spread(s, counts[s], n) for s, n in NL_PRESETS[nl].items()}
        by_stage: dict[str, list] = {}
        for pair in nl:
            if len(pair) != 2:
                raise ValueError(f"nl_blocks: {pair!r} is not allowed; expected a (stage, block index) pair")
            stage, index = pair
            _option("nl_blocks: stage", stage, STAGES)
            by_stage.setdefault(stage, []).append(index)
        return {s: placed_after(s, indices, counts[s], self.depth) for s, indices in by_stage.items()}

    def spec(self) -> VideoResNetSpec:
        arch, variant = ARCHS[self.arch], self._variant()
        base = WIDTHS[self.width] if isinstance(self.width, str) else self.width
        placement = self.placement()
        stages = []
        for k, (name, n) in enumerate(zip(STAGES, DEPTHS[self.depth])):
            period, offset = INFLATION[variant.inflation][k]
            blocks = tuple(arch.inflated if i % period == offset else BlockSpec() for i in range(n))
            stages.append(StageSpec(name, base * 2**k, 1 if k == 0 else 2, blocks, placement.get(name, ())))
        pools = POOLS[variant.pools]
        return VideoResNetSpec(
            stages=tuple(stages),
            stem_channels=base,
            conv1_t=arch.conv1_t,
            conv1_stride=(pools.conv1_stride_t, 2, 2),
            pool1_kernel=pools.pool1,
            pool1_stride=(pools.pool1_stride_t, 2, 2),
            pool2_kernel=pools.pool2,
            stride_on=variant.stride_on,
            num_classes=self.num_classes,
            dropout=self.dropout,
            zero_init_residual=self.zero_init_residual,
            nonlocal_knobs=self.resolved_knobs(),
            block=BlockChoice(self.block, dict(self.block_args), self.block_position),
        )

    def resolved_knobs(self) -> NonLocalKnobs:
        """The non-local knobs every block gets: those left None filled from ``nl_preset`` or the variant's."""
        return self.nonlocal_knobs.resolved(self.nl_preset or self._variant().nonlocal_preset)

    @property
    def name(self) -> str:
        """A short label in the paper's words, e.g. ``R101 NL C2D 5-block``, ``R50 NL C2D 1-block res3{2}``
        or ``R50 NL C2D 1-block [instantiation=dot_product]``: non-default choices are spelled out."""
        placement = self.placement()
        count = sum(len(v) for v in placement.values())
        nl = count and self.block == DEFAULT_BLOCK
        label = f"R{self.depth} {'NL ' if nl else ''}{self.arch.upper().replace('X', 'x')}"
        if count:
            label += f" {count}-block"
            if self.nl_stage is not None or not isinstance(self.nl_blocks, int):
                label += " " + " ".join(f"{s}{{{','.join(map(str, v))}}}" for s, v in placement.items())
            knobs, plain = self.nonlocal_knobs, NonLocalKnobs()
            changed = [
                f"{f.name}={getattr(knobs, f.name)}"
                for f in fields(knobs)
                if getattr(knobs, f.name) != getattr(plain, f.name)
            ]
            if self.nl_preset is not None:
                changed.insert(0, f"nl_preset={self.nl_preset}")
            if not nl:
                label += f" {self.block}"
                changed = [f"{k}={v}" for k, v in self.block_args.items()]
            if self.block_position != "after_block":
                changed.append(self.block_position)
            if changed:
                label += f" [{', '.join(changed)}]"
        if self.width != "paper":
            label += f" width={self.width}"
        v, default = self._variant(), VARIANTS[self.variant]
        if self.variant != DEFAULT_VARIANT or v != default:
            overrides = [k for k in ("pools", "stride_on", "inflation") if getattr(v, k) != getattr(default, k)]
            label += f" ({self.variant}" + "".join(f", {k}={getattr(v, k)}" for k in overrides) + ")"
        return label

    def build(self, seed: int | None = None) -> VideoResNet:
        """The model, initialised from ``seed``'s per-layer streams (``VideoResNet.reset_parameters``), or
        from torch's global generator when None."""
        return VideoResNet(self.spec(), seed=seed)


_CONFIG = tuple(f.name for f in fields(ModelConfig) if f.name != "nonlocal_knobs")


def make_config(**kwargs) -> ModelConfig:
    """``ModelConfig`` from flat keyword arguments: the non-local block's knobs (``nlbench.ops.knobs.NAMES``:
    ``instantiation``, ``mode``, ``inner_channels``, ``inner_ratio``, ``subsample``, ``subsample_order``,
    ``pool_kernel``, ``scale``, ``norm_by``, ``init``, ``W_z_bias``, ``impl``) go to its ``nonlocal_knobs``."""
    unknown = sorted(set(kwargs) - set(KNOB_NAMES) - set(_CONFIG))
    if unknown:
        raise TypeError(f"build_model: unexpected keyword argument(s) {unknown}; expected {_CONFIG + KNOB_NAMES}")
    knobs = NonLocalKnobs(**{k: v for k, v in kwargs.items() if k in KNOB_NAMES})
    return ModelConfig(**{k: v for k, v in kwargs.items() if k in _CONFIG}, nonlocal_knobs=knobs)


def build_model(
    depth: int = 50,
    arch: str = "c2d",
    nl_blocks: int | tuple[tuple[str, int], ...] = 0,
    nl_stage: str | None = None,
    width: str | int = "paper",
    num_classes: int = 400,
    variant: str = DEFAULT_VARIANT,
    **kwargs,
) -> VideoResNet:
    """A model of the paper, e.g. ``build_model(101, "c2d", nl_blocks=5)`` (Table 2e's NL C2D) or
    ``build_model(50, nl_blocks=1, nl_stage="res3", instantiation="dot_product", width="small")``.
    See ``ModelConfig`` for the arguments; ``dropout``, ``pools``, ``stride_on``, ``inflation`` and the
    non-local knobs go in ``kwargs``."""
    return make_config(
        depth=depth, arch=arch, nl_blocks=nl_blocks, nl_stage=nl_stage, width=width,
        num_classes=num_classes, variant=variant, **kwargs,
    ).build()


__all__ = [
    "ARCHS", "Arch", "DEFAULT_VARIANT", "DEPTHS", "INFLATION", "ModelConfig", "NL_PRESETS", "POOLS", "Pools", "VARIANTS",
    "Variant", "WIDTHS", "build_model", "make_config", "spread",
]
