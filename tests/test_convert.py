"""Released checkpoints into the zoo (nlbench/models/convert.py).

- mmaction2 and pytorchvideo, whose code installs here: the peer's own model (mmaction2 ``ResNet3d`` +
  ``I3DHead``, pytorchvideo ``create_resnet`` with the hub's c2d_r50 / i3d_r50 arguments) with random weights
  and random BN statistics is saved in the peer's format, converted, and must give the same logits on random
  clips in eval mode, float64, relative error <= 1e-10. A mapping entry swapped breaks it (tested).
- PySlowFast and the authors' Caffe2 code, which do not install: a checkpoint is written with the names and
  shapes their model-building code gives (spelled out below, independently of the converter's table), and
  every tensor must land on our tensor of the same role, and convert back to the same file.
"""
from __future__ import annotations

import functools
import importlib.util
import pickle
import sys
import types

import numpy as np
import pytest
import torch
from torch import nn

from nlbench.cli import main
from nlbench.models.convert import FIELDS, RULES, ConversionError, convert, our_name, peer_name, to_peer
from nlbench.models.resnet import VideoResNet

TOL = 1e-10
CLIP = (2, 3, 8, 32, 32)  # the smallest clip of the non-local models (res4 2x2, pooled 1x2x2 to one key)
# The peers' models at 1/8 of their channels (their own base_channels / stem_dim_out): the names, the kernels
# and the forward are those of the released models, at a cost that fits the fast suite. The paper-width models'
# parameter counts are checked against the published ones (tests/test_released.py, the slow test below).
BASE = 8


def rel(a, b) -> float:
    assert b.norm() > 0
    return ((a - b).norm() / b.norm()).item()


def randomise(model: nn.Module, seed: int) -> None:
    """Every parameter and BN statistic random (BN gamma away from 0, so no branch is hidden)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(torch.rand(m.num_features, generator=gen, dtype=torch.float64) * 0.5 + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen, dtype=torch.float64) * 0.1)
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen, dtype=torch.float64) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen, dtype=torch.float64) + 0.5)
            elif isinstance(m, (nn.Conv3d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen, dtype=torch.float64) * fan_in**-0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen, dtype=torch.float64) * 0.1)


def ours_from(converted) -> VideoResNet:
    model = VideoResNet(converted.config.spec()).double()
    model.load_state_dict(converted.state, strict=True)
    return model.eval()


def clip(seed: int = 7) -> torch.Tensor:
    return torch.randn(CLIP, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ------------------------------------------------------------------------------------------ mmaction2


@functools.cache
def _mmaction2():
    """mmaction2's ResNet3d and I3DHead from the installed wheel, module by module: its package __init__
    asserts mmcv < 2.2 (the peers extra has mmcv-lite 2.2, whose NonLocal3d and ConvModule these use), and
    its models/__init__ imports every model (its localizers need a drn module the wheel lacks)."""
    pytest.importorskip("mmengine", reason="mmengine is not installed (pip install -e '.[peers]')")
    pytest.importorskip("mmcv.cnn", reason="mmcv-lite is not installed (pip install -e '.[peers]')")
    spec = importlib.util.find_spec("mmaction")
    if spec is None:
        pytest.skip("mmaction2 is not installed (pip install --no-deps mmaction2==1.2.0)")
    root = spec.submodule_search_locations[0]
    for name in ("mmaction", "mmaction.models", "mmaction.models.backbones", "mmaction.models.heads",
                 "mmaction.models.losses", "mmaction.utils", "mmaction.evaluation"):
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = [root + name.removeprefix("mmaction").replace(".", "/")]
            sys.modules[name] = package
    import mmaction.utils.typing_utils as typing_utils

    vars(sys.modules["mmaction.utils"]).update({k: v for k, v in vars(typing_utils).items() if not k.startswith("_")})
    sys.modules["mmaction.evaluation"].top_k_accuracy = None  # used by its loss bookkeeping, not the forward
    import mmaction.models.losses.cross_entropy_loss  # noqa: F401  (registers the head's default loss)
    from mmaction.models.backbones.resnet3d import ResNet3d
    from mmaction.models.heads.i3d_head import I3DHead

    return ResNet3d, I3DHead


@functools.cache
def mmaction2_model(instantiation: str | None, base: int = BASE):
    """configs/_base_/models/i3d_r50.py with the non-local configs' backbone (mmaction2 1.2.0 wheel, .mim/)."""
    ResNet3d, I3DHead = _mmaction2()
    nl = {}
    if instantiation:
        nl = dict(non_local=((0, 0, 0), (0, 1, 0, 1), (0, 1, 0, 1, 0, 1), (0, 0, 0)),
                  non_local_cfg=dict(sub_sample=True, use_scale=False, norm_cfg=dict(type="BN3d", requires_grad=True),
                                     mode=instantiation))
    backbone = ResNet3d(depth=50, pretrained=None, pretrained2d=False, base_channels=base, conv1_kernel=(5, 7, 7), conv1_stride_t=2,
                        pool1_stride_t=2, conv_cfg=dict(type="Conv3d"), norm_eval=False,
                        inflate=((1, 1, 1), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 1, 0)), zero_init_residual=False, **nl)
    head = I3DHead(num_classes=400, in_channels=32 * base, spatial_type="avg", dropout_ratio=0.5, init_std=0.01)
    model = nn.ModuleDict({"backbone": backbone, "cls_head": head}).double()
    randomise(model, seed=1)
    return model.eval()


def save_mmaction2(model, path, instantiation):
    # A released mmaction2 checkpoint: meta (with the config's text) and the state dict.
    cfg = ("model = dict(backbone=dict(non_local=((0, 0, 0), (0, 1, 0, 1), (0, 1, 0, 1, 0, 1), (0, 0, 0)), "
           "non_local_cfg=dict(sub_sample=True, use_scale=False, norm_cfg=dict(type='BN3d', requires_grad=True), "
           f"mode='{instantiation}')))\ntest_pipeline = [dict(type='DecordInit', mode='x')]" if instantiation else "")
    torch.save({"meta": {"cfg": cfg}, "state_dict": model.state_dict()}, path)


MMACTION2_MODELS = [None, "dot_product", "embedded_gaussian", "gaussian"]


@pytest.mark.parametrize("instantiation", MMACTION2_MODELS, ids=lambda i: f"nl-{i}" if i else "i3d")
def test_mmaction2_logits_identical(tmp_path, instantiation):
    peer = mmaction2_model(instantiation)
    save_mmaction2(peer, tmp_path / "peer.pth", instantiation)
    converted = convert(tmp_path / "peer.pth", "mmaction2")
    c = converted.config
    assert (c.depth, c.arch, c.variant) == (50, "i3d_3x1x1", "mmaction2")
    assert c.nl_blocks == (5 if instantiation else 0)
    if instantiation:
        assert c.resolved_knobs().instantiation == instantiation
    x = clip()
    with torch.no_grad():
        theirs = peer["cls_head"](peer["backbone"](x))
        assert theirs.isfinite().all() and theirs.std() > 0.1  # logits that can tell a wrong weight
        assert rel(ours_from(converted)(x), theirs) <= TOL


@pytest.mark.slow
def test_mmaction2_counts_of_the_converted_models():
    # The metafile's (mmaction2 1.2.0 .mim/configs/recognition/i3d/metafile.yml) and the 0.x metafile's exact counts.
    for instantiation, params in ((None, 28_043_472), ("dot_product", 35_397_840), ("gaussian", 31_723_728)):
        peer = mmaction2_model(instantiation, base=64)
        assert sum(p.numel() for p in peer.parameters()) == params


# ------------------------------------------------------------------------------------------ pytorchvideo


@functools.cache
def pytorchvideo_model(arch: str):
    """pytorchvideo.models.hub.resnet c2d_r50 / i3d_r50's arguments; the head's pool covers the res5 map of
    our small clip (the hub's (4, 7, 7) is res5 of its 8x224x224 clips: a global average either way)."""
    pytest.importorskip("pytorchvideo", reason="pytorchvideo is not installed (pip install -e '.[peers]')")
    stub = importlib.util.find_spec("torchvision") is None
    if stub:
        # pytorchvideo.models.head imports torchvision's RoIAlign for its detection head, which create_resnet
        # never builds; nlbench does not depend on torchvision. The stand-in is gone once pytorchvideo is
        # imported: other packages (torchmetrics) look torchvision up too.
        vision, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")
        ops.RoIAlign, vision.ops = None, ops
        sys.modules.update({"torchvision": vision, "torchvision.ops": ops})
    try:
        from pytorchvideo.models import resnet
    finally:
        if stub:
            del sys.modules["torchvision"], sys.modules["torchvision.ops"]
    kernels = {
        "c2d": dict(stem_conv_kernel_size=(1, 7, 7), stage_conv_a_kernel_size=((1, 1, 1),) * 4),
        "i3d": dict(stem_conv_kernel_size=(5, 7, 7), stage_conv_a_kernel_size=(
            (3, 1, 1), [(3, 1, 1), (1, 1, 1)], [(3, 1, 1), (1, 1, 1)], [(1, 1, 1), (3, 1, 1)])),
    }[arch]
    t, h, w = CLIP[2] // 2, CLIP[3] // 32, CLIP[4] // 32
    model = resnet.create_resnet(stage1_pool=nn.MaxPool3d, head_pool_kernel_size=(t, h, w), stem_dim_out=BASE,
                                 **kernels).double()
    randomise(model, seed=2)
    return model.eval()


@pytest.mark.parametrize("arch,ours", [("c2d", "c2d"), ("i3d", "i3d_3x1x1")])
def test_pytorchvideo_logits_identical(tmp_path, arch, ours):
    peer = pytorchvideo_model(arch)
    torch.save({"model_state": peer.state_dict()}, tmp_path / f"{arch.upper()}_8x8_R50.pyth")
    converted = convert(tmp_path / f"{arch.upper()}_8x8_R50.pyth", "pytorchvideo")
    assert (converted.config.arch, converted.config.variant, converted.config.depth) == (ours, "slowfast", 50)
    x = clip()
    with torch.no_grad():
        assert rel(ours_from(converted)(x), peer(x)) <= TOL


# ------------------------------------------------------------------------------------------ broken tables


def _peer(fmt, inst):
    return mmaction2_model(inst) if fmt == "mmaction2" else pytorchvideo_model("i3d")


def _save(peer, fmt, path, inst):
    if fmt == "mmaction2":
        save_mmaction2(peer, path, inst)
    else:
        torch.save({"model_state": peer.state_dict()}, path)


def _logits(peer, fmt, x):
    return peer["cls_head"](peer["backbone"](x)) if fmt == "mmaction2" else peer(x)


# (format, table, entry, entry, instantiation): one entry of the mapping swapped with another
SWAPS = [
    ("mmaction2", "rules", "theta", "phi", "dot_product"),  # f(x_i, x_j) read backwards
    ("mmaction2", "rules", "g", "theta", "embedded_gaussian"),  # same shapes, other roles
    ("mmaction2", "rules", "conv", "shortcut_conv", None),  # other shapes: refused, naming them
    ("pytorchvideo", "bn fields", "running_mean", "running_var", None),
    ("pytorchvideo", "rules", "stem_bn", "fc", None),
]


@pytest.mark.parametrize("fmt,table,a,b,inst", SWAPS, ids=[f"{f}-{a}<->{b}" for f, _, a, b, _ in SWAPS])
def test_a_swapped_mapping_entry_breaks_the_conversion(tmp_path, monkeypatch, fmt, table, a, b, inst):
    peer = _peer(fmt, inst)
    _save(peer, fmt, tmp_path / "peer.pth", inst)
    if table == "rules":
        rules = dict(RULES[fmt])
        rules[a], rules[b] = rules[b], rules[a]
        monkeypatch.setitem(RULES, fmt, rules)
    else:
        conv, bn = FIELDS[fmt]
        bn = dict(bn)
        bn[a], bn[b] = bn[b], bn[a]
        monkeypatch.setitem(FIELDS, fmt, (conv, bn))
    try:
        converted = convert(tmp_path / "peer.pth", fmt)
    except ConversionError as e:  # tensors of another shape (or none) where the swap put them: one line
        assert "\n" not in str(e) and "peer.pth" in str(e)
        return
    x = clip()
    with torch.no_grad():
        error = rel(ours_from(converted)(x), _logits(peer, fmt, x))
    assert not error <= 1e-3  # NaN (a variance read as a mean, below 0) is as wrong as a large error


# ------------------------------------------------------------------------------------------ SlowFast, Caffe2
# The names and shapes as the peers' model-building code makes them, written out here from that code (not
# from the converter's table), with our tensor of the same role beside each.

DEPTH = {50: (3, 4, 6, 3)}
I3D_T = {2: (3, 3, 3), 3: (3, 1, 3, 1), 4: (3, 1, 3, 1, 3, 1), 5: (1, 3, 1)}  # temporal kernel of conv a (res2..res5)


def _bn(peer_prefix, ours_prefix, c, fields):
    return [(peer_prefix + p, f"{ours_prefix}.{o}", (c,)) for o, p in fields.items()]


def slowfast_names(arch: str, nonlocal_after: dict[int, tuple[int, ...]]):
    """PySlowFast ResNet (resnet_helper.ResStage / ResBlock / BottleneckTransform, stem_helper.VideoModelStem,
    nonlocal_helper.Nonlocal, head_helper.ResNetBasicHead) for one pathway: (peer name, our name, shape)."""
    bn = {"weight": ".weight", "bias": ".bias", "running_mean": ".running_mean", "running_var": ".running_var"}
    t1 = 5 if arch == "i3d" else 1
    out = [("s1.pathway0_stem.conv.weight", "conv1.weight", (64, 3, t1, 7, 7)),
           *_bn("s1.pathway0_stem.bn", "bn1", 64, bn)]
    dim_in = 64
    for s, n in zip(range(2, 6), DEPTH[50]):
        inner, dim_out, layer = 64 * 2 ** (s - 2), 256 * 2 ** (s - 2), f"layer{s - 1}"
        for i in range(n):
            p, o = f"s{s}.pathway0_res{i}", f"{layer}.{i}"
            t = I3D_T[s][i] if arch == "i3d" else 1
            if i == 0:
                out += [(f"{p}.branch1.weight", f"{o}.downsample.0.weight", (dim_out, dim_in, 1, 1, 1)),
                        *_bn(f"{p}.branch1_bn", f"{o}.downsample.1", dim_out, bn)]
            c_in = dim_in if i == 0 else dim_out
            for letter, j, shape in (("a", 1, (inner, c_in, t, 1, 1)), ("b", 2, (inner, inner, 1, 3, 3)),
                                     ("c", 3, (dim_out, inner, 1, 1, 1))):
                out += [(f"{p}.branch2.{letter}.weight", f"{o}.conv{j}.weight", shape),
                        *_bn(f"{p}.branch2.{letter}_bn", f"{o}.bn{j}", shape[0], bn)]
            if i in nonlocal_after.get(s, ()):
                q, r, d = f"s{s}.pathway0_nonlocal{i}", f"{layer}.nonlocal{i}", dim_out // 2
                for theirs, ours_ in (("theta", "theta"), ("phi", "phi"), ("g", "g")):
                    out += [(f"{q}.conv_{theirs}.weight", f"{r}.{ours_}.weight", (d, dim_out, 1, 1, 1)),
                            (f"{q}.conv_{theirs}.bias", f"{r}.{ours_}.bias", (d,))]
                out += [(f"{q}.conv_out.weight", f"{r}.W_z.weight", (dim_out, d, 1, 1, 1)),
                        (f"{q}.conv_out.bias", f"{r}.W_z.bias", (dim_out,)), *_bn(f"{q}.bn", f"{r}.bn", dim_out, bn)]
        dim_in = dim_out
    return out + [("head.projection.weight", "fc.weight", (400, 2048)), ("head.projection.bias", "fc.bias", (400,))]


def caffe2_names(arch: str, nonlocal_after: dict[int, tuple[int, ...]], frozen: bool = False):
    """video-nonlocal-net (models/resnet_video.py, resnet_helper.py, nonlocal_helper.py) blob names:
    conv1_w, res_conv1_bn_*, resS_I_branch2{a,b,c}_w / _bn_*, resS_I_branch1_w / _bn_*,
    nonlocal_convS_I_{theta,phi,g,out}_{w,b} / _bn_*, pred_w / pred_b; I3D_3x3x3 inflates branch2b."""
    bn = {"weight": "_s", "bias": "_b"} if frozen else {"weight": "_s", "bias": "_b", "running_mean": "_rm",
                                                           "running_var": "_riv"}
    t1 = 5 if arch != "c2d" else 1
    out = [("conv1_w", "conv1.weight", (64, 3, t1, 7, 7)), *_bn("res_conv1_bn", "bn1", 64, bn)]
    dim_in = 64
    for s, n in zip(range(2, 6), DEPTH[50]):
        inner, dim_out, layer = 64 * 2 ** (s - 2), 256 * 2 ** (s - 2), f"layer{s - 1}"
        for i in range(n):
            p, o = f"res{s}_{i}", f"{layer}.{i}"
            t = I3D_T[s][i] if arch != "c2d" else 1
            if i == 0:
                out += [(f"{p}_branch1_w", f"{o}.downsample.0.weight", (dim_out, dim_in, 1, 1, 1)),
                        *_bn(f"{p}_branch1_bn", f"{o}.downsample.1", dim_out, bn)]
            c_in = dim_in if i == 0 else dim_out
            ta, tb = (1, t) if arch == "i3d_3x3x3" else (t, 1)
            for letter, j, shape in (("a", 1, (inner, c_in, ta, 1, 1)), ("b", 2, (inner, inner, tb, 3, 3)),
                                     ("c", 3, (dim_out, inner, 1, 1, 1))):
                out += [(f"{p}_branch2{letter}_w", f"{o}.conv{j}.weight", shape),
                        *_bn(f"{p}_branch2{letter}_bn", f"{o}.bn{j}", shape[0], bn)]
            if i in nonlocal_after.get(s, ()):
                q, r, d = f"nonlocal_conv{s}_{i}", f"{layer}.nonlocal{i}", dim_out // 2
                for part, ours_ in (("theta", "theta"), ("phi", "phi"), ("g", "g")):
                    out += [(f"{q}_{part}_w", f"{r}.{ours_}.weight", (d, dim_out, 1, 1, 1)),
                            (f"{q}_{part}_b", f"{r}.{ours_}.bias", (d,))]
                out += [(f"{q}_out_w", f"{r}.W_z.weight", (dim_out, d, 1, 1, 1)), (f"{q}_out_b", f"{r}.W_z.bias", (dim_out,)),
                        *_bn(f"{q}_bn", f"{r}.bn", dim_out, bn)]
        dim_in = dim_out
    return out + [("pred_w", "fc.weight", (400, 2048)), ("pred_b", "fc.bias", (400,))]


NL5 = {3: (1, 3), 4: (1, 3, 5)}


def _values(names, seed=3):
    gen = torch.Generator().manual_seed(seed)
    return {p: torch.randn(shape, generator=gen) for p, _, shape in names}


def write_slowfast(path, names, instantiation="dot_product"):
    cfg = f"MODEL:\n  ARCH: c2d\nNONLOCAL:\n  INSTANTIATION: {instantiation}\n"
    torch.save({"epoch": 196, "model_state": _values(names), "cfg": cfg}, path)


def write_caffe2(path, names, extra=()):
    blobs = {p: v.numpy() for p, v in _values(names).items()}
    blobs.update({name: np.zeros(1, dtype=np.float32) for name in extra})
    with open(path, "wb") as f:
        pickle.dump({"blobs": blobs}, f, protocol=2)


SLOWFAST = [("c2d", "c2d", "C2D_NLN_8x8_R50"), ("i3d", "i3d_3x1x1", "I3D_NLN_8x8_R50")]


@pytest.mark.parametrize("arch,ours,name", SLOWFAST)
def test_slowfast_names_land_where_the_peer_puts_them(tmp_path, arch, ours, name):
    names = slowfast_names(arch, NL5)
    write_slowfast(tmp_path / f"{name}.pyth", names)
    converted = convert(tmp_path / f"{name}.pyth", "slowfast")
    c = converted.config
    assert (c.arch, c.variant, c.nl_blocks, c.resolved_knobs().instantiation) == (ours, "slowfast", 5, "dot_product")
    values = _values(names)
    for peer, our, shape in names:
        assert torch.equal(converted.state[our], values[peer]), (peer, our)
    # and back: the same names, the same tensors
    back = to_peer("slowfast", converted.state)
    assert set(back) == set(values) and all(torch.equal(back[k], values[k]) for k in values)
    model = ours_from(converted).float()
    assert model(torch.randn(1, 3, 8, 64, 64)).shape == (1, 400)


CAFFE2 = [("c2d", {}), ("c2d", NL5), ("i3d_3x1x1", {}), ("i3d_3x1x1", NL5), ("i3d_3x3x3", NL5)]


@pytest.mark.parametrize("arch,nl", CAFFE2, ids=[f"{a}-nl{len(sum(n.values(), ()))}" for a, n in CAFFE2])
def test_caffe2_blobs_land_where_the_peer_puts_them(tmp_path, arch, nl):
    names = caffe2_names(arch, nl)
    # Optimizer state beside the weights (as the authors' pickles hold): left out, not refused.
    write_caffe2(tmp_path / "model.pkl", names, extra=("res2_0_branch2a_w_momentum", "lr", "iter"))
    converted = convert(tmp_path / "model.pkl", "caffe2")
    c = converted.config
    assert (c.arch, c.variant, c.nl_blocks) == (arch, "released", 5 if nl else 0)
    values = _values(names)
    for peer, our, shape in names:
        assert torch.equal(converted.state[our], values[peer]), (peer, our)
    back = to_peer("caffe2", converted.state)
    assert set(back) == set(values) and all(torch.equal(back[k], values[k]) for k in values)


def test_caffe2_frozen_bn_is_the_affine_transform(tmp_path):
    names = caffe2_names("i3d_3x1x1", NL5, frozen=True)
    write_caffe2(tmp_path / "i3d_nl_128f.pkl", names)
    converted = convert(tmp_path / "i3d_nl_128f.pkl", "caffe2")
    assert "bn1" in converted.frozen_bn and "layer3.nonlocal1.bn" in converted.frozen_bn
    model = ours_from(converted)
    bn = model.bn1
    x = torch.randn(2, 64, 2, 3, 3, dtype=torch.float64)
    s, b = bn.weight[None, :, None, None, None], bn.bias[None, :, None, None, None]
    assert rel(bn(x), s * x + b) <= 1e-7  # float32 running_var 1 - eps; 1e-16 with float64 tensors


def test_caffe2_name_rules():
    # A few blobs by hand, as SlowFast's c2_model_loading.py renames them.
    assert our_name("caffe2", "res4_5_branch2c_bn_riv") == "layer3.5.bn3.running_var"
    assert our_name("caffe2", "nonlocal_conv4_3_out_w") == "layer3.nonlocal3.W_z.weight"
    assert our_name("caffe2", "res_conv1_bn_s") == "bn1.weight"
    assert our_name("caffe2", "res3_0_branch1_bn_b") == "layer2.0.downsample.1.bias"
    assert our_name("caffe2", "res3_0_branch2a_bn_x") is None



# Blob -> PySlowFast name pairs as PySlowFast's own converter of the video-nonlocal-net checkpoints renames
# them (slowfast/utils/c2_model_loading.py, get_name_convert_func, read at facebookresearch/SlowFast 31d2ea7;
# the module names it produces are those of its ResStage, "pathway{p}_res{i}" / "pathway{p}_nonlocal{i}" after
# residual block i, ResBlock's branch1 / branch1_bn / branch2.{a,b,c} / {a,b,c}_bn, the stem's conv / bn and
# the head's projection): the two formats' tables must send each pair to one tensor of ours.
C2_TO_SLOWFAST = [
    ("conv1_w", "s1.pathway0_stem.conv.weight"),
    ("res_conv1_bn_s", "s1.pathway0_stem.bn.weight"),
    ("res_conv1_bn_riv", "s1.pathway0_stem.bn.running_var"),
    ("res2_0_branch2a_w", "s2.pathway0_res0.branch2.a.weight"),
    ("res4_4_branch2c_bn_b", "s4.pathway0_res4.branch2.c_bn.bias"),
    ("res3_2_branch2b_bn_rm", "s3.pathway0_res2.branch2.b_bn.running_mean"),
    ("res4_0_branch1_w", "s4.pathway0_res0.branch1.weight"),
    ("res5_0_branch1_bn_s", "s5.pathway0_res0.branch1_bn.weight"),
    ("nonlocal_conv3_1_theta_w", "s3.pathway0_nonlocal1.conv_theta.weight"),
    ("nonlocal_conv4_3_phi_b", "s4.pathway0_nonlocal3.conv_phi.bias"),
    ("nonlocal_conv4_5_g_w", "s4.pathway0_nonlocal5.conv_g.weight"),
    ("nonlocal_conv4_5_out_w", "s4.pathway0_nonlocal5.conv_out.weight"),
    ("nonlocal_conv4_5_bn_s", "s4.pathway0_nonlocal5.bn.weight"),
    ("nonlocal_conv3_3_bn_riv", "s3.pathway0_nonlocal3.bn.running_var"),
    ("pred_w", "head.projection.weight"),
    ("pred_b", "head.projection.bias"),
]


@pytest.mark.parametrize("blob, slowfast", C2_TO_SLOWFAST)
def test_caffe2_and_slowfast_names_agree_with_slowfast_s_own_converter(blob, slowfast):
    ours = our_name("caffe2", blob)
    assert ours is not None and our_name("slowfast", slowfast) == ours
    assert peer_name("caffe2", ours) == blob and peer_name("slowfast", ours) == slowfast


# ------------------------------------------------------------------------------------------ refusals


def _first_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    return err


def test_a_renamed_tensor_is_one_line_naming_it(tmp_path, capsys):
    names = caffe2_names("c2d", NL5)
    renamed = [(p.replace("nonlocal_conv4_3_g_w", "nonlocal_conv4_3_gg_w"), o, s) for p, o, s in names]
    write_caffe2(tmp_path / "m.pkl", renamed)
    err = _first_line_error(capsys, ["convert", str(tmp_path / "m.pkl"), "--from", "caffe2", "--out", str(tmp_path / "o")])
    assert "nonlocal_conv4_3_gg_w" in err and "m.pkl" in err
    assert not (tmp_path / "o").exists()


def test_a_missing_tensor_is_one_line_naming_it(tmp_path, capsys):
    names = [n for n in slowfast_names("i3d", NL5) if n[0] != "s4.pathway0_res2.branch2.b_bn.running_var"]
    write_slowfast(tmp_path / "m.pyth", names)
    err = _first_line_error(capsys, ["convert", str(tmp_path / "m.pyth"), "--from", "slowfast", "--out", str(tmp_path / "o")])
    assert "s4.pathway0_res2.branch2.b_bn.running_var" in err


def test_a_shape_mismatch_is_one_line_naming_it(tmp_path, capsys):
    names = [(p, o, (9, *s[1:]) if p == "head.projection.bias" else s) for p, o, s in slowfast_names("c2d", NL5)]
    write_slowfast(tmp_path / "m.pyth", names)
    err = _first_line_error(capsys, ["convert", str(tmp_path / "m.pyth"), "--from", "slowfast", "--out", str(tmp_path / "o")])
    assert "head.projection.bias" in err and "(9,)" in err


def test_bad_format_and_bad_file(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    err = _first_line_error(capsys, ["convert", str(tmp_path / "notes.txt"), "--from", "caffe3", "--out", str(tmp_path / "o")])
    assert "caffe3" in err
    err = _first_line_error(capsys, ["convert", str(tmp_path / "notes.txt"), "--from", "slowfast", "--out", str(tmp_path / "o")])
    assert "notes.txt" in err
    err = _first_line_error(capsys, ["convert", str(tmp_path / "nothing.pth"), "--from", "mmaction2", "--out", str(tmp_path / "o")])
    assert "nothing.pth" in err and "no such file" in err
    # a pickle that would run code is refused, not run
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump({"blobs": {"conv1_w": np.zeros(1)}, "x": types.SimpleNamespace()}, f)
    err = _first_line_error(capsys, ["convert", str(tmp_path / "evil.pkl"), "--from", "caffe2", "--out", str(tmp_path / "o")])
    assert "evil.pkl" in err


def test_a_wrong_format_is_refused(tmp_path, capsys):
    write_slowfast(tmp_path / "m.pyth", slowfast_names("c2d", NL5))
    err = _first_line_error(capsys, ["convert", str(tmp_path / "m.pyth"), "--from", "mmaction2", "--out", str(tmp_path / "o")])
    assert "no state_dict" in err and "model_state" in err


def test_ambiguous_instantiation_needs_a_word(tmp_path, capsys):
    names = slowfast_names("c2d", NL5)
    torch.save({"model_state": _values(names)}, tmp_path / "m.pyth")  # no cfg saved
    err = _first_line_error(capsys, ["convert", str(tmp_path / "m.pyth"), "--from", "slowfast", "--out", str(tmp_path / "o")])
    assert "--instantiation" in err
    assert main(["convert", str(tmp_path / "m.pyth"), "--from", "slowfast", "--out", str(tmp_path / "o"),
                 "--instantiation", "embedded_gaussian"]) == 0


def test_convert_checks_a_given_config(tmp_path, capsys):
    write_slowfast(tmp_path / "m.pyth", slowfast_names("c2d", NL5))
    assert main(["convert", str(tmp_path / "m.pyth"), "--from", "slowfast", "--out", str(tmp_path / "a")]) == 0
    # the written config is the one it checks against
    assert main(["convert", str(tmp_path / "m.pyth"), "--from", "slowfast", "--out", str(tmp_path / "b"),
                 "--config", str(tmp_path / "a" / "config.yaml")]) == 0
    (tmp_path / "i3d.yaml").write_text("model: {depth: 50, arch: i3d_3x1x1, width: paper, variant: slowfast, nl_blocks: 5}\n"
                                       "data: {source: synthetic}\n")
    err = _first_line_error(capsys, ["convert", str(tmp_path / "m.pyth"), "--from", "slowfast", "--out", str(tmp_path / "c"),
                                     "--config", str(tmp_path / "i3d.yaml")])
    assert "C2D" in err and "I3D" in err


def test_converted_checkpoint_starts_a_run(tmp_path):
    # model.init_from: fine-tuning from released weights (the paper's 128-frame models start from the 32-frame ones).
    from nlbench.training import RunConfig
    from nlbench.training.run import build_model

    names = caffe2_names("i3d_3x1x1", NL5)
    write_caffe2(tmp_path / "i3d_nl.pkl", names)
    assert main(["convert", str(tmp_path / "i3d_nl.pkl"), "--from", "caffe2", "--out", str(tmp_path / "nl")]) == 0
    config = RunConfig.load(tmp_path / "nl" / "config.yaml", ["data.root=/nowhere", "data.frames=128",
                                                             f"model.init_from={tmp_path / 'nl'}"])
    model = build_model(config, num_classes=400)
    values = _values(names)
    for peer, our, _ in names:
        assert torch.equal(model.state_dict()[our], values[peer]), our


def test_python_objects_beside_the_tensors_need_trust(tmp_path, capsys):
    # A training checkpoint may keep a logger's state in it: read only when the user says the file is trusted.
    names = slowfast_names("c2d", NL5)
    torch.save({"model_state": _values(names), "cfg": "NONLOCAL:\n  INSTANTIATION: dot_product\n",
                "history": types.SimpleNamespace(loss=[1.0])}, tmp_path / "m.pyth")
    argv = ["convert", str(tmp_path / "m.pyth"), "--from", "slowfast", "--out", str(tmp_path / "o")]
    assert "--trust-pickle" in _first_line_error(capsys, argv)
    assert main([*argv, "--trust-pickle"]) == 0
