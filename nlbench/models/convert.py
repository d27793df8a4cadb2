"""Released checkpoints of the peers and of the authors into nlbench's zoo, tensor for tensor.

A format is DATA: how the peer names each tensor of a video ResNet (``RULES``: one template per kind of
tensor, ours beside theirs), its field names (``FIELDS``: ``weight`` is ``_w`` in Caffe2, a BN's
``running_var`` is ``_riv``), the tensors that are not the model's (optimizer momenta), and the zoo
variant whose architecture it is (``FORMATS``). Templates work both ways: a peer name is parsed with the
peer's template and written with ours, and the tests write a peer checkpoint from ours with the same table.

Conversion (``convert``): read the file, rename every tensor, then read the architecture off the renamed
tensors (depth, C2D / I3D kernels, where the non-local blocks are and which of their parts exist, the
classes) as a ``ModelConfig`` of the format's variant, build it and check that the two tensor sets are the
same, shape for shape. Anything left over on either side, or of another shape, is refused in one line naming
the tensors by the peer's names.

Formats and where their names come from:

- ``mmaction2``: mmaction2 1.x ``ResNet3d`` + ``I3DHead`` (``backbone.*``, ``cls_head.*``; mmcv
  ``NonLocal3d`` inside ``Bottleneck3d`` after the residual sum and ReLU: the same computation as our
  block following residual block i). Checked against the installed code (tests/test_convert.py).
- ``pytorchvideo``: ``create_resnet`` of the hub's ``c2d_r50`` / ``i3d_r50`` (``blocks.N.*``, with
  ``stage1_pool`` taking ``blocks.2``, so res3..res5 are blocks 3..5 and the head block 6; checkpoint
  under ``model_state``). Checked against the installed code.
- ``slowfast``: PySlowFast ``.pyth`` (``model_state``; ``s1.pathway0_stem``, ``sK.pathway0_resI.branch2.a``,
  ``sK.pathway0_nonlocalI.conv_theta``, ``head.projection``): SlowFast's ``ResStage`` / ``ResBlock`` /
  ``ResNetBasicStem`` / ``Nonlocal`` module names (not installable here; checked in tests/test_convert.py
  against the renaming of its ``c2_model_loading.py``).
- ``caffe2``: video-nonlocal-net ``.pkl`` (``blobs``: ``conv1_w``, ``res_conv1_bn_s``,
  ``res2_0_branch2a_w``, ``nonlocal_conv3_1_theta_w``, ``pred_w``): the blob names SlowFast's
  ``c2_model_loading.py`` renames to its own (tests/test_convert.py checks both tables against that renaming).

Frozen BN: a Caffe2 ``AffineChannel`` (``_bn_s`` and ``_bn_b`` without ``_bn_rm`` / ``_bn_riv``: the
128-frame models) computes ``s * x + b``; it becomes a BatchNorm with running mean 0 and running variance
``1 - eps``, so that ``(x - 0) / sqrt(1 - eps + eps) * s + b`` is ``s * x + b`` exactly in eval mode.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import re
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from nlbench.models.resnet import VideoResNet
from nlbench.models.spec import STAGES
from nlbench.ops.nonlocal_block import PRESETS
from nlbench.models.zoo import ARCHS, DEPTHS, INFLATION, NL_PRESETS, VARIANTS, WIDTHS, ModelConfig, make_config

# Our tensor names, with the parts a rule carries over: k the layer (1..4 = res2..res5), i a residual block,
# j a conv of the bottleneck (1..3), f a field (weight, bias, running_mean, running_var).
OURS = {
    "stem_conv": "conv1.{f}",
    "stem_bn": "bn1.{f}",
    "conv": "layer{k}.{i}.conv{j}.{f}",
    "bn": "layer{k}.{i}.bn{j}.{f}",
    "shortcut_conv": "layer{k}.{i}.downsample.0.{f}",
    "shortcut_bn": "layer{k}.{i}.downsample.1.{f}",
    "theta": "layer{k}.nonlocal{i}.theta.{f}",
    "phi": "layer{k}.nonlocal{i}.phi.{f}",
    "g": "layer{k}.nonlocal{i}.g.{f}",
    "W_z": "layer{k}.nonlocal{i}.W_z.{f}",
    "nl_bn": "layer{k}.nonlocal{i}.bn.{f}",
    "fc": "fc.{f}",
}
BN_PARTS = ("stem_bn", "bn", "shortcut_bn", "nl_bn")

# The peer's name of each. Beside k, i, j, f: s = k + 1 (the paper's stage number, res2..res5), abc = the
# letter of conv j (a, b, c), pv = pytorchvideo's index of the stage in its ModuleList.
RULES: dict[str, dict[str, str]] = {
    "mmaction2": {
        "stem_conv": "backbone.conv1.conv.{f}",
        "stem_bn": "backbone.conv1.bn.{f}",
        "conv": "backbone.layer{k}.{i}.conv{j}.conv.{f}",
        "bn": "backbone.layer{k}.{i}.conv{j}.bn.{f}",
        "shortcut_conv": "backbone.layer{k}.{i}.downsample.conv.{f}",
        "shortcut_bn": "backbone.layer{k}.{i}.downsample.bn.{f}",
        # mmcv NonLocal3d(sub_sample=True) wraps phi and g in Sequential(conv, MaxPool3d).
        "theta": "backbone.layer{k}.{i}.non_local_block.theta.conv.{f}",
        "phi": "backbone.layer{k}.{i}.non_local_block.phi.0.conv.{f}",
        "g": "backbone.layer{k}.{i}.non_local_block.g.0.conv.{f}",
        "W_z": "backbone.layer{k}.{i}.non_local_block.conv_out.conv.{f}",
        "nl_bn": "backbone.layer{k}.{i}.non_local_block.conv_out.bn.{f}",
        "fc": "cls_head.fc_cls.{f}",
    },
    "pytorchvideo": {
        "stem_conv": "blocks.0.conv.{f}",
        "stem_bn": "blocks.0.norm.{f}",
        "conv": "blocks.{pv}.res_blocks.{i}.branch2.conv_{abc}.{f}",
        "bn": "blocks.{pv}.res_blocks.{i}.branch2.norm_{abc}.{f}",
        "shortcut_conv": "blocks.{pv}.res_blocks.{i}.branch1_conv.{f}",
        "shortcut_bn": "blocks.{pv}.res_blocks.{i}.branch1_norm.{f}",
        "fc": "blocks.6.proj.{f}",
    },
    "slowfast": {
        "stem_conv": "s1.pathway0_stem.conv.{f}",
        "stem_bn": "s1.pathway0_stem.bn.{f}",
        "conv": "s{s}.pathway0_res{i}.branch2.{abc}.{f}",
        "bn": "s{s}.pathway0_res{i}.branch2.{abc}_bn.{f}",
        "shortcut_conv": "s{s}.pathway0_res{i}.branch1.{f}",
        "shortcut_bn": "s{s}.pathway0_res{i}.branch1_bn.{f}",
        "theta": "s{s}.pathway0_nonlocal{i}.conv_theta.{f}",
        "phi": "s{s}.pathway0_nonlocal{i}.conv_phi.{f}",
        "g": "s{s}.pathway0_nonlocal{i}.conv_g.{f}",
        "W_z": "s{s}.pathway0_nonlocal{i}.conv_out.{f}",
        "nl_bn": "s{s}.pathway0_nonlocal{i}.bn.{f}",
        "fc": "head.projection.{f}",
    },
    "caffe2": {
        "stem_conv": "conv1_{f}",
        "stem_bn": "res_conv1_bn_{f}",
        "conv": "res{s}_{i}_branch2{abc}_{f}",
        "bn": "res{s}_{i}_branch2{abc}_bn_{f}",
        "shortcut_conv": "res{s}_{i}_branch1_{f}",
        "shortcut_bn": "res{s}_{i}_branch1_bn_{f}",
        "theta": "nonlocal_conv{s}_{i}_theta_{f}",
        "phi": "nonlocal_conv{s}_{i}_phi_{f}",
        "g": "nonlocal_conv{s}_{i}_g_{f}",
        "W_z": "nonlocal_conv{s}_{i}_out_{f}",
        "nl_bn": "nonlocal_conv{s}_{i}_bn_{f}",
        "fc": "pred_{f}",
    },
}
TORCH_FIELDS = {"weight": "weight", "bias": "bias", "running_mean": "running_mean", "running_var": "running_var"}
# Per format: (conv and fc fields, BN fields), ours -> theirs.
FIELDS: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "mmaction2": (TORCH_FIELDS, TORCH_FIELDS),
    "pytorchvideo": (TORCH_FIELDS, TORCH_FIELDS),
    "slowfast": (TORCH_FIELDS, TORCH_FIELDS),
    "caffe2": ({"weight": "w", "bias": "b"}, {"weight": "s", "bias": "b", "running_mean": "rm", "running_var": "riv"}),
}
PV_BLOCK = {1: 1, 2: 3, 3: 4, 4: 5}  # pytorchvideo: blocks.2 is stage1_pool (no tensors)


@dataclass(frozen=True)
class Format:
    """What a format's file holds and what it runs as."""

    variant: str  # the ModelConfig variant whose architecture the peer's models have
    container: tuple[str, ...]  # where the state dict is in the file
    ignore: str  # tensors that are not the model's (regex on the peer's name)
    instantiation_text: str  # regex on the checkpoint's saved config that names the instantiation ("" none)
    instantiation_words: dict  # the peer's word for it -> ours
    default_instantiation: str | None  # when neither the tensors nor the file say (None: refuse)
    frozen_bn: bool  # a BN given as affine only (no running statistics) is frozen BN
    data: dict  # the run config's data keys the peer's models were trained and tested with


KINETICS_VIEWS = dict(source="video", size=224, train_short_side=[256, 320], test_short_side=256, test_crop=256,
                      num_clips=10, num_crops=3, ensemble="mean_softmax")
FORMATS: dict[str, Format] = {
    # mmaction2's i3d configs: 32x2 clips, ImageNet mean/std (123.675, 116.28, 103.53) / (58.395, 57.12, 57.375)
    # of 255, test 10 clips x ThreeCrop(256) at short side 256, average_clips='prob'.
    "mmaction2": Format("mmaction2", ("state_dict",), r"(^|\.)num_batches_tracked$",
                        r"non_local_cfg\s*=\s*dict\(.*?\bmode\s*=\s*'(\w+)'",
                        {"gaussian": "gaussian", "embedded_gaussian": "embedded_gaussian",
                         "dot_product": "dot_product"}, None, False,
                        dict(KINETICS_VIEWS, frames=32, sampling_rate=2, mean=[0.485, 0.456, 0.406],
                             std=[0.229, 0.224, 0.225])),
    # The hub's 8x8 models: 8 frames at stride 8, mean 0.45 / std 0.225, 10 x 3 test.
    "pytorchvideo": Format("slowfast", ("model_state",), r"(^|\.)num_batches_tracked$", "", {}, None, False,
                           dict(KINETICS_VIEWS, frames=8, sampling_rate=8)),
    # PySlowFast saves its config as YAML text in the checkpoint: NONLOCAL.INSTANTIATION softmax | dot_product.
    "slowfast": Format("slowfast", ("model_state",), r"(^|\.)num_batches_tracked$", r"INSTANTIATION:\s*(\w+)",
                       {"softmax": "embedded_gaussian", "dot_product": "dot_product"}, None, False,
                       dict(KINETICS_VIEWS, frames=8, sampling_rate=8)),
    # video-nonlocal-net: the pickle has no config; its NL configs use USE_SOFTMAX (embedded Gaussian), the
    # paper's default, so that is assumed unless --instantiation says otherwise. Momenta and the iteration
    # counter are the optimizer's.
    "caffe2": Format("released", ("blobs",), r"(_momentum$|^lr$|^iter$|^model_iter$)", "", {},
                     "embedded_gaussian", True, dict(KINETICS_VIEWS, frames=32, sampling_rate=2)),
}


class ConversionError(ValueError):
    """A checkpoint that does not convert; the message is one line naming the file and the tensors."""


# ------------------------------------------------------------------------------------------ names


PLACEHOLDERS = {"k": r"\d", "s": r"\d", "pv": r"\d", "i": r"\d+", "j": r"\d", "abc": "[abc]", "f": "[a-z_]+"}


def _regex(template: str) -> re.Pattern:
    """A template as a regex with one named group per placeholder."""
    parts = re.split(r"\{(\w+)\}", template)
    out = "".join(re.escape(p) if n % 2 == 0 else f"(?P<{p}>{PLACEHOLDERS[p]})" for n, p in enumerate(parts))
    return re.compile(f"^{out}$")


def _peer_values(fmt: str, part: str, v: dict) -> dict:
    conv_fields, bn_fields = FIELDS[fmt]
    out = dict(v)
    if "k" in v:
        k = int(v["k"])
        out.update(s=k + 1, pv=PV_BLOCK[k])
    if "j" in v:
        out["abc"] = "abc"[int(v["j"]) - 1]
    out["f"] = (bn_fields if part in BN_PARTS else conv_fields).get(v["f"])
    return out


def _our_values(fmt: str, part: str, v: dict) -> dict | None:
    conv_fields, bn_fields = FIELDS[fmt]
    out = {}
    if "k" in v:
        out["k"] = int(v["k"])
    elif "s" in v:
        out["k"] = int(v["s"]) - 1
    elif "pv" in v:
        out["k"] = {b: k for k, b in PV_BLOCK.items()}.get(int(v["pv"]))
    if "i" in v:
        out["i"] = int(v["i"])
    if "j" in v:
        out["j"] = int(v["j"])
    elif "abc" in v:
        out["j"] = "abc".find(v["abc"]) + 1
    inverse = {b: a for a, b in (bn_fields if part in BN_PARTS else conv_fields).items()}
    out["f"] = inverse.get(v["f"])
    if out["f"] is None or out.get("k") not in (None, 1, 2, 3, 4) or out.get("j") == 0:
        return None
    return out


def peer_name(fmt: str, ours: str) -> str | None:
    """The peer's name of one of our tensors (None: the format has no such tensor)."""
    for part, template in OURS.items():
        m = _regex(template).match(ours)
        if m and part in RULES[fmt]:
            values = _peer_values(fmt, part, m.groupdict())
            return None if values["f"] is None else RULES[fmt][part].format(**values)
    return None


def our_name(fmt: str, peer: str) -> str | None:
    """Our name of one of the peer's tensors (None: no rule of the format matches it)."""
    for part, template in RULES[fmt].items():
        m = _regex(template).match(peer)
        if m:
            values = _our_values(fmt, part, m.groupdict())
            if values is None:  # e.g. caffe2's res2_0_branch1_bn_s read as a conv's field "bn_s": not this rule
                continue
            try:
                return OURS[part].format(**values)
            except KeyError:  # the peer's name lacks a part of ours (a block index for a stage's tensor)
                return None
    return None


def to_peer(fmt: str, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Our state dict in the peer's names (BN step counters and tensors the peer has no name for dropped):
    what the tests write as a peer checkpoint, with the same table that reads one."""
    out = {}
    for key, value in state.items():
        name = peer_name(fmt, key)
        if name is not None:
            out[name] = value
    return out


# ------------------------------------------------------------------------------------------ files


class _ArraysOnly(pickle.Unpickler):
    """Unpickles numpy arrays, dicts and strings and nothing else: a .pkl of blobs runs no code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("collections", "OrderedDict"),
               ("_codecs", "encode")}  # bytes pickled by Python 3 at protocol 2: latin-1 text back to bytes

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not an array")
        return super().find_class(module, name)


def _read(path: Path, fmt: str, trust_pickle: bool = False) -> tuple[dict, str]:
    """(the file's state dict, its saved config text or "")."""
    try:
        if fmt == "caffe2" and not trust_pickle:
            with open(path, "rb") as f:
                raw = _ArraysOnly(f, encoding="latin1").load()
        elif fmt == "caffe2":
            with open(path, "rb") as f:
                raw = pickle.load(f, encoding="latin1")
        else:
            # weights_only: a checkpoint is data; never run code from one unless told to.
            raw = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, AttributeError, ImportError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        # A training checkpoint may keep Python objects beside its tensors (a logger's state, numpy scalars).
        raise ConversionError(f"{path}: not a {fmt} checkpoint that holds only tensors ({first}); if you trust the "
                              f"file, --trust-pickle reads it with Python's pickle, which can run code") from None
    if not isinstance(raw, dict):
        raise ConversionError(f"{path}: expected a dict of tensors, got {type(raw).__name__}")
    text = ""
    for key in ("cfg",):  # PySlowFast
        if isinstance(raw.get(key), str):
            text = raw[key]
    meta = raw.get("meta")
    if isinstance(meta, dict) and isinstance(meta.get("cfg"), str):  # mmengine saves the config's text
        text = meta["cfg"]
    container = next((raw[k] for k in FORMATS[fmt].container if isinstance(raw.get(k), dict)), None)
    if container is not None:
        raw = container
    elif not all(isinstance(v, (Tensor, np.ndarray)) for v in raw.values()):
        raise ConversionError(f"{path}: no {' or '.join(FORMATS[fmt].container)} in it, where a {fmt} checkpoint "
                              f"keeps its tensors (it holds {_listing([str(k) for k in raw])}); is it {fmt}'s?")
    state = {}
    for key, value in raw.items():
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(np.ascontiguousarray(value))
        if not isinstance(value, Tensor):
            raise ConversionError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor")
        state[str(key).removeprefix("module.")] = value
    return state, text


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------ architecture


def _listing(names: list[str], limit: int = 4) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _infer(state: dict[str, Tensor], fmt: str, instantiation: str | None, text: str, where: str) -> ModelConfig:
    """The ModelConfig of the format's variant whose tensors these are (in our names)."""
    blocks = {k: 1 + max((int(m[1]) for key in state if (m := re.match(rf"layer{k}\.(\d+)\.conv1\.", key))),
                         default=-1) for k in range(1, 5)}
    depth = next((d for d, counts in DEPTHS.items() if counts == tuple(blocks.values())), None)
    if depth is None or "conv1.weight" not in state or "fc.weight" not in state:
        raise ConversionError(f"{where}: not a ResNet-50/101 in {fmt}'s names (residual blocks per stage "
                              f"{tuple(blocks.values())}; expected one of {tuple(DEPTHS.values())})")
    t = {(k, i): (state[f"layer{k}.{i}.conv1.weight"].shape[2], state[f"layer{k}.{i}.conv2.weight"].shape[2])
         for k in range(1, 5) for i in range(blocks[k])}
    conv1_t = state["conv1.weight"].shape[2]
    inflated = {kt for kt in t.values() if kt != (1, 1)}
    arch = next((a for a, spec in ARCHS.items() if spec.conv1_t == conv1_t
                 and inflated <= {(spec.inflated.t1, spec.inflated.t2)}), None)
    if arch is None:
        raise ConversionError(f"{where}: conv1 is {conv1_t}x7x7 and the residual blocks' temporal kernels are "
                              f"{sorted(inflated)}: no arch of {tuple(ARCHS)} has that")
    pattern = next((name for name, rows in INFLATION.items()
                    if all((t[(k, i)] != (1, 1)) == (i % rows[k - 1][0] == rows[k - 1][1])
                           for k in range(1, 5) for i in range(blocks[k]))), None) if inflated else None
    if inflated and pattern is None:
        raise ConversionError(f"{where}: its inflated residual blocks follow none of the inflation patterns "
                              f"{tuple(INFLATION)}")
    layers = sorted({(int(m[1]), int(m[2])) for key in state if (m := re.match(r"layer(\d)\.nonlocal(\d+)\.", key))})
    width = state["conv1.weight"].shape[0]
    variant = FORMATS[fmt].variant
    kwargs = dict(depth=depth, arch=arch, variant=variant, num_classes=state["fc.weight"].shape[0],
                  width=next((w for w, c in WIDTHS.items() if c == width), width))
    if pattern is not None and pattern != VARIANTS[variant].inflation:
        kwargs["inflation"] = pattern
    if layers:
        placement = tuple((STAGES[k - 1], i) for k, i in layers)
        # One of the paper's presets (5 blocks: res3 {1, 3}, res4 {1, 3, 5}) is named as such.
        grouped = {s: tuple(i for t, i in placement if t == s) for s, _ in placement}
        kwargs["nl_blocks"] = next((n for n in NL_PRESETS if n and make_config(depth=depth, nl_blocks=n).placement()
                                    == grouped), placement)
        first = "layer{}.nonlocal{}".format(*layers[0])
        kwargs["instantiation"] = _instantiation(state, first, fmt, instantiation, text, where)
        # Knobs that show in the tensors, where they differ from the variant's preset.
        preset = PRESETS[VARIANTS[variant].nonlocal_preset].knobs(kwargs["instantiation"])
        if (f"{first}.W_z.bias" in state) != preset["W_z_bias"]:
            kwargs["W_z_bias"] = not preset["W_z_bias"]
        if f"{first}.bn.weight" not in state:
            kwargs["init"] = "zero_conv"  # no BN after W_z in this block
        # Subsampling does not show in the tensors: every released model pools 1x2x2, the blocks' default.
    return make_config(**kwargs)


def _instantiation(state, block: str, fmt: str, given: str | None, text: str, where: str) -> str:
    if f"{block}.theta.weight" not in state:
        found = "gaussian"  # no embeddings: theta and phi are the identity
    else:
        found = None  # dot product and embedded Gaussian have the same tensors
    fmt_ = FORMATS[fmt]
    said = None
    if fmt_.instantiation_text and text:
        m = re.search(fmt_.instantiation_text, text, re.DOTALL)
        said = fmt_.instantiation_words.get(m[1]) if m else None
    choice = given or said or found or fmt_.default_instantiation
    if choice is None:
        raise ConversionError(f"{where}: its non-local blocks could be dot_product or embedded_gaussian (the same "
                              f"tensors) and the file does not say; give --instantiation")
    if found == "gaussian" and choice != "gaussian":
        raise ConversionError(f"{where}: its non-local blocks have no theta/phi (gaussian), not {choice}")
    if found is None and choice == "gaussian":
        raise ConversionError(f"{where}: its non-local blocks have theta and phi, so they are not gaussian")
    return choice


# ------------------------------------------------------------------------------------------ convert


@dataclass(frozen=True)
class Converted:
    config: ModelConfig
    state: dict[str, Tensor]  # our names, every tensor of the model (BN step counters as built)
    frozen_bn: tuple[str, ...]  # BNs given as affine only, filled with mean 0 / var 1 - eps
    source_sha256: str


def convert(path: str | os.PathLike, fmt: str, *, instantiation: str | None = None,
            expected: ModelConfig | None = None, trust_pickle: bool = False) -> Converted:
    """Read the peer's checkpoint at ``path`` and return our model's config and state dict.

    ``expected``: the config it must be (a run config's model): refused, naming the differences, if the
    checkpoint's architecture is another. ``trust_pickle``: read Python objects besides tensors (runs the
    file's pickled code; off by default). Raises ConversionError (one line) on any tensor without a place.
    """
    path = Path(path)
    if fmt not in FORMATS:
        raise ConversionError(f"--from {fmt!r} is not allowed; expected one of {tuple(FORMATS)}")
    if not path.is_file():
        raise ConversionError(f"{path}: no such file")
    where = str(path)
    peer, text = _read(path, fmt, trust_pickle)
    ignore = re.compile(FORMATS[fmt].ignore)
    ours, unknown = {}, []
    for key, value in peer.items():
        if ignore.search(key):
            continue
        name = our_name(fmt, key)
        if name is None:
            unknown.append(key)
        else:
            ours[name] = value
    if unknown:
        raise ConversionError(f"{where}: {len(unknown)} tensors have no place in nlbench's model ({fmt} names): "
                              f"{_listing(unknown)}")
    config = _infer(ours, fmt, instantiation or (expected and expected.resolved_knobs().instantiation), text, where)
    if expected is not None:
        expected = replace(expected, num_classes=config.num_classes)  # the checkpoint's classifier decides
        _check_same(config, expected, where)
        config = expected
    with torch.device("meta"):  # shapes only: nothing is drawn or computed
        model = VideoResNet(config.spec())
    target = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    frozen = []
    if FORMATS[fmt].frozen_bn:
        for name, m in model.named_modules():
            stats = (f"{name}.running_mean", f"{name}.running_var")
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and not any(s in ours for s in stats) \
                    and f"{name}.weight" in ours:
                dtype = ours[f"{name}.weight"].dtype
                ours[stats[0]] = torch.zeros(m.num_features, dtype=dtype)
                ours[stats[1]] = torch.full((m.num_features,), 1 - m.eps, dtype=dtype)
                frozen.append(name)
    missing = [peer_name(fmt, k) or k for k in target if k not in ours]
    if missing:
        raise ConversionError(f"{where}: {config.name} needs {len(missing)} tensors the checkpoint does not have: "
                              f"{_listing(missing)}")
    extra = [peer_name(fmt, k) or k for k in ours if k not in target]
    if extra:
        raise ConversionError(f"{where}: {len(extra)} tensors have no place in {config.name}: {_listing(extra)}")
    shapes = [f"{peer_name(fmt, k)} is {tuple(v.shape)}, {k} is {tuple(target[k].shape)}"
              for k, v in ours.items() if v.shape != target[k].shape]
    if shapes:
        raise ConversionError(f"{where}: {len(shapes)} tensors differ in shape: {_listing(shapes, 2)}")
    # In our module order; the checkpoint's own dtype is kept (a float64 peer model converts without rounding).
    state = {key: ours[key].clone() if key in ours else torch.tensor(0) for key in model.state_dict()}
    return Converted(config, state, tuple(frozen), sha256(path))


def _check_same(found: ModelConfig, expected: ModelConfig, where: str) -> None:
    a, b = found.spec(), expected.spec()
    # The classifier's dropout and the initialisation are training choices, not the architecture.
    differ = [f.name for f in fields(a) if f.name not in ("dropout", "zero_init_residual")
              and getattr(a, f.name) != getattr(b, f.name)]
    if differ:
        raise ConversionError(f"{where}: the checkpoint is {found.name}, the config's model is {expected.name} "
                              f"(they differ in {', '.join(differ)})")


def run_config(converted: Converted, fmt: str, frames: int | None = None) -> dict:
    """The run config (as plain data) the converted model belongs to: its model, and the peer's data protocol
    (clip length and stride, normalisation, the 10 x 3 test at short side 256). ``data.root`` is left null:
    ``nlbench eval --data ROOT`` gives it."""
    c = converted.config
    model = {f.name: getattr(c, f.name) for f in fields(c) if f.name not in ("num_classes", "nonlocal_knobs")}
    knobs = {f.name: getattr(c.nonlocal_knobs, f.name) for f in fields(c.nonlocal_knobs)
             if getattr(c.nonlocal_knobs, f.name) is not None}
    data = dict(FORMATS[fmt].data, root=None)
    if frames:
        data["frames"] = frames
    return json.loads(json.dumps({"model": {**model, **knobs}, "data": data}))  # tuples as lists, for YAML


def write(converted: Converted, fmt: str, source: str | os.PathLike, out: str | os.PathLike,
          config: dict | str) -> Path:
    """``out/model.pt`` (our state dict, what ``model.init_from`` and ``nlbench eval --weights`` read),
    ``out/config.yaml`` (the run config it belongs to: ``run_config``'s, or a given config's text) and
    ``out/conversion.json`` (source, its sha256, the frozen BNs filled), each written atomically."""
    import yaml

    from nlbench.io import atomic_file, atomic_write_text

    out = Path(out)
    buffer = io.BytesIO()
    torch.save(converted.state, buffer)
    with atomic_file(out / "model.pt") as f:
        f.write(buffer.getvalue())
    if isinstance(config, dict):
        config = (f"# {converted.config.name}, converted from {fmt} checkpoint {Path(source).name} by nlbench convert.\n"
                  f"# data.root is left out: nlbench eval {out / 'config.yaml'} --weights {out} --data ROOT\n"
                  + yaml.safe_dump(config, sort_keys=False))
    atomic_write_text(out / "config.yaml", config)
    info = {"source": str(source), "source_sha256": converted.source_sha256, "format": fmt,
            "model": converted.config.name, "tensors": len(converted.state), "frozen_bn": list(converted.frozen_bn)}
    atomic_write_text(out / "conversion.json", json.dumps(info, indent=2) + "\n")
    return out


__all__ = ["FORMATS", "RULES", "ConversionError", "Converted", "convert", "our_name", "peer_name", "run_config",
           "to_peer", "write"]
