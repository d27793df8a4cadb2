"""One video ResNet for every backbone of the paper (Table 1), built from a ``VideoResNetSpec``.

Module names follow torchvision's 2-D ResNet (``conv1``, ``bn1``, ``layer1``..``layer4`` for res2..res5, each
``Bottleneck`` with ``conv1``/``bn1``/``conv2``/``bn2``/``conv3``/``bn3``/``downsample``, ``fc``), so an
ImageNet state dict maps onto it by name (``nlbench.models.pretrained``). The paper's two max pools carry no
weights and keep the paper's names, ``pool1`` and ``pool2``. A placed block (the non-local block, or any block
of ``nlbench.ops.registry``) that follows residual block i of a stage is the stage's child ``nonlocal{i}``
(``layer3.nonlocal4``: the slot the paper's placement names, whatever the block), so inserting it renames
nothing: ``layer3.5.conv1`` is residual block 5 with or without blocks before it. A block placed inside
residual block i (``block_position: in_residual``) is that block's child ``plugin`` (``layer3.4.plugin``).
"""
from __future__ import annotations

import contextlib
from collections import OrderedDict
from functools import partial

from torch import Tensor, nn

from nlbench.models.spec import LAYER_NAMES, STAGES, BlockSpec, StageSpec, VideoResNetSpec
from nlbench.ops import registry
from nlbench.seeds import global_stream


def _thw_text(thw) -> str:
    return "x".join(str(v) for v in thw)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 residual block with temporal kernels from ``spec`` (t1 x1x1, t2 x3x3, 1x1x1).

    ``stride_on`` puts the spatial stride on conv1 (the original ResNet, and the paper's FLOP count) or on
    conv2 (the released code, like torchvision's ResNet v1.5): on conv2 the 3x3 runs at the higher resolution,
    which costs about 3% more FLOPs for R101 but no parameters. ``plugin``: a block applied to the branch's
    output before the shortcut is added (GCNet's position for its global context block).
    """

    def __init__(self, inplanes: int, planes: int, stride: int, spec: BlockSpec, stride_on: str, expansion: int,
                 plugin: nn.Module | None = None):
        super().__init__()
        s1, s2 = (stride, 1) if stride_on == "1x1" else (1, stride)
        out = planes * expansion
        self.conv1 = nn.Conv3d(inplanes, planes, (spec.t1, 1, 1), (1, s1, s1), (spec.t1 // 2, 0, 0), bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, (spec.t2, 3, 3), (1, s2, s2), (spec.t2 // 2, 1, 1), bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != out:
            # Projection shortcut (ResNet option B) only where the shape changes.
            self.downsample = nn.Sequential(
                nn.Conv3d(inplanes, out, 1, (1, stride, stride), bias=False), nn.BatchNorm3d(out)
            )
        self.plugin = plugin

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.plugin is not None:
            out = self.plugin(out)
        return self.relu(out + identity)


def _pool(kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> nn.MaxPool3d:
    # (k - 1) // 2 gives Table 1's sizes for 3-wide (pad 1) and 2-wide (pad 0) kernels alike.
    return nn.MaxPool3d(kernel, stride, tuple((k - 1) // 2 for k in kernel))


def _out(n: int, k: int, s: int, p: int) -> int:
    return (n + 2 * p - k) // s + 1


class VideoResNet(nn.Module):
    """conv1 -> pool1 -> res2 -> pool2 -> res3 -> res4 -> res5 -> global average pool -> dropout -> fc.

    Input (N, 3, T, H, W); output (N, num_classes) logits. Build one with ``nlbench.models.build_model``.
    """

    def __init__(self, spec: VideoResNetSpec, seed: int | None = None):
        super().__init__()
        if not isinstance(spec, VideoResNetSpec):
            raise TypeError(f"VideoResNet: expected a VideoResNetSpec, got {type(spec).__name__}")
        self.spec = spec
        t = spec.conv1_t
        self.conv1 = nn.Conv3d(3, spec.stem_channels, (t, 7, 7), spec.conv1_stride, (t // 2, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(spec.stem_channels)
        self.relu = nn.ReLU(inplace=True)
        self.pool1 = _pool(spec.pool1_kernel, spec.pool1_stride)
        inplanes = spec.stem_channels
        for stage in spec.stages:
            layer, inplanes = self._make_stage(stage, inplanes)
            setattr(self, LAYER_NAMES[stage.name], layer)
            if stage.name == "res2":
                self.pool2 = _pool(spec.pool2_kernel, spec.pool2_stride)
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(spec.dropout)
        self.fc = nn.Linear(inplanes, spec.num_classes)
        self.reset_parameters(seed)

    def _make_stage(self, stage: StageSpec, inplanes: int) -> tuple[nn.Sequential, int]:
        children: OrderedDict[str, nn.Module] = OrderedDict()
        out = stage.planes * self.spec.expansion
        choice = self.spec.block
        inside = choice.position == "in_residual"
        for i, block in enumerate(stage.blocks):
            stride = stage.stride if i == 0 else 1
            placed = choice.build(out, self.spec.nonlocal_knobs) if i in stage.nonlocal_after else None
            children[str(i)] = Bottleneck(
                inplanes, stage.planes, stride, block, self.spec.stride_on, self.spec.expansion,
                plugin=placed if inside else None,
            )
            inplanes = out
            if placed is not None and not inside:
                children[f"nonlocal{i}"] = placed
        return nn.Sequential(children), out

    def reset_parameters(self, seed: int | None = None) -> None:
        """Initialise every layer: the placed blocks by their own rule, then as the identity where they can be
        (``nlbench.ops.registry.init_block``), everything else as torchvision's ResNet, except the fc:
        Normal(0, 0.01) as the released code, so fresh logits start near uniform.

        ``seed=None`` draws from torch's global generator, in module order. With a seed, each layer draws
        from its own stream keyed by ``(seed, "init", its qualified name)`` (``nlbench.seeds``): the names of
        the backbone's layers do not depend on the non-local blocks (``layer3.5.conv1`` with or without a
        ``layer3.nonlocal4``), so a model with non-local blocks has exactly the backbone weights of the plain
        model of the same seed, and adding, moving or re-configuring a block changes no backbone weight.
        """
        placed = self.placed_blocks()
        block_parts = {id(m) for b in placed.values() for m in b.modules()}
        # zero_init_residual: each residual block's last BN gamma starts at 0 (Goyal et al.).
        zero_gamma = {id(b.bn3) for b in self.modules() if isinstance(b, Bottleneck)} if self.spec.zero_init_residual else set()
        for name, m in self.named_modules():
            if name in placed:
                rule = partial(registry.init_block, m)
            elif id(m) in block_parts or not isinstance(m, (nn.Conv3d, nn.BatchNorm3d, nn.Linear)):
                continue
            else:
                rule = partial(self._init_layer, m, id(m) in zero_gamma)
            with global_stream(seed, "init", name) if seed is not None else contextlib.nullcontext():
                rule()

    def _init_layer(self, m: nn.Module, zero_gamma: bool = False) -> None:
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm3d):
            (nn.init.zeros_ if zero_gamma else nn.init.ones_)(m.weight)
            nn.init.zeros_(m.bias)
        elif m is self.fc:
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------------------------ structure

    def stage(self, name: str) -> nn.Sequential:
        """The ``nn.Sequential`` of stage ``res2``..``res5`` (residual and non-local blocks in order)."""
        if name not in STAGES:
            raise ValueError(f"VideoResNet: stage={name!r} is not allowed; expected one of {STAGES}")
        return getattr(self, LAYER_NAMES[name])

    def residual_block(self, stage: str, index: int) -> Bottleneck:
        """Residual block ``index`` of ``stage``; positional indexing of the stage would count NL blocks too."""
        return getattr(self.stage(stage), str(index))

    def block_name(self, stage: str, index: int) -> str:
        """The qualified name of the block placed at residual block ``index`` of ``stage``."""
        inside = self.spec.block.position == "in_residual"
        return f"{LAYER_NAMES[stage]}.{index}.plugin" if inside else f"{LAYER_NAMES[stage]}.nonlocal{index}"

    def placed_blocks(self) -> dict[str, nn.Module]:
        """Qualified module name -> placed block (non-local or any other), in network order."""
        return {name: self.get_submodule(name) for name in (self.block_name(s, i) for s, i in self.spec.placement())}

    def feature_shapes(self, input_thw: tuple[int, int, int]) -> dict[str, tuple[int, int, int]]:
        """(T, H, W) after conv1, pool1, res2, pool2, res3, res4, res5 for an input of ``input_thw``
        (conv arithmetic only: nothing runs)."""
        spec = self.spec
        thw = tuple(input_thw)
        conv1_k, conv1_p = (spec.conv1_t, 7, 7), (spec.conv1_t // 2, 3, 3)
        thw = tuple(_out(n, k, s, p) for n, k, s, p in zip(thw, conv1_k, spec.conv1_stride, conv1_p))
        shapes = {"conv1": thw}
        thw = tuple(_out(n, k, s, (k - 1) // 2) for n, k, s in zip(thw, spec.pool1_kernel, spec.pool1_stride))
        shapes["pool1"] = thw
        for stage in spec.stages:
            t, h, w = thw
            # Every conv of a strided block (1x1 pad 0 or 3x3 pad 1) maps n -> (n - 1) // s + 1.
            thw = (t, (h - 1) // stage.stride + 1, (w - 1) // stage.stride + 1)
            shapes[stage.name] = thw
            if stage.name == "res2":
                thw = tuple(_out(n, k, s, (k - 1) // 2) for n, k, s in zip(thw, spec.pool2_kernel, spec.pool2_stride))
                shapes["pool2"] = thw
        return shapes

    def minimum_input(self) -> tuple[tuple[int, int, int], str]:
        """The smallest (T, H, W) this network takes, and why: the total stride (smaller inputs would leave
        some stage nothing to downsample), or a placed block's own minimum (a non-local block's subsampling
        pool must fit its map)."""
        strides = self.spec.strides()
        minimum, reason = strides["res5"], f"the network's total stride is {_thw_text(strides['res5'])}"
        for stage, index in self.spec.placement():
            name = self.block_name(stage, index)
            smallest = registry.minimum_input(self.get_submodule(name))
            need = tuple(s * k for s, k in zip(strides[stage], smallest))
            if any(n > m for n, m in zip(need, minimum)):
                minimum = tuple(max(n, m) for n, m in zip(need, minimum))
                reason = f"the block {name} needs a {stage} map of at least {_thw_text(smallest)}"
        return minimum, reason

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 5 or x.shape[1] != 3:
            raise ValueError(f"VideoResNet: input must be (N, 3, T, H, W); got shape {tuple(x.shape)}")
        thw = tuple(int(n) for n in x.shape[2:])
        minimum, reason = self.minimum_input()
        if any(n < m for n, m in zip(thw, minimum)):
            raise ValueError(
                f"VideoResNet: input T x H x W = {_thw_text(thw)} is smaller than the minimum {_thw_text(minimum)} ({reason})"
            )

    # ------------------------------------------------------------------------------------ forward

    def forward_features(self, x: Tensor) -> Tensor:
        """res5's output map (N, C, T, H, W), before the head."""
        self._check_input(x)
        x = self.pool1(self.relu(self.bn1(self.conv1(x))))
        x = self.pool2(self.layer1(x))
        return self.layer4(self.layer3(self.layer2(x)))

    def forward(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.forward_features(x)).flatten(1)
        return self.fc(self.dropout(x))


__all__ = ["Bottleneck", "VideoResNet"]
