"""The video path as a run config sets it up: transforms and test views from the data keys, bad values as
one line naming the key, the probe cache (a second run opens no video), and what the run record states."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import nlbench.data.video as video_module
from nlbench.cli import main
from nlbench.data.transforms import EvalTransform, TrainTransform
from nlbench.data.video import write_video
from nlbench.training import ConfigError, RunConfig, train_run
from nlbench.training.config import DataSection
from nlbench.training.run import build_datamodule

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _probe_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NLBENCH_CACHE_DIR", str(tmp_path / "cache"))


def corners(size: int = 32, frames: int = 4) -> np.ndarray:
    """Frames with a 2x2 white mark in each corner (the synthetic set's ring/X cues sit there)."""
    x = np.full((frames, size, size, 3), 40, np.uint8)
    for top in (0, size - 2):
        for left in (0, size - 2):
            x[:, top : top + 2, left : left + 2] = 255
    return x


def marks_kept(clip: torch.Tensor) -> bool:
    """All four corner marks inside the (normalised) clip's frame."""
    c = clip[0, 0]
    return all(bool(c[i, j] > c[c.shape[0] // 2, c.shape[1] // 2] + 1) for i in (0, -1) for j in (0, -1))


def test_no_jitter_never_cuts_a_corner_and_auto_jitter_does():
    torch.manual_seed(0)
    frames = corners()
    whole = TrainTransform(DataSection(size=32, train_short_side=None).transform())
    assert all(marks_kept(whole(frames)) for _ in range(50))
    jitter = TrainTransform(DataSection(size=32).transform())  # the paper's [256, 320] scaled: [37, 46]
    assert not all(marks_kept(jitter(frames)) for _ in range(50))
    test = DataSection(size=32, test_short_side=None).transform()
    assert marks_kept(EvalTransform(test, test.test_crop)(frames))
    assert not marks_kept(EvalTransform(DataSection(size=32).transform(), 32)(frames))  # 37 -> centre 32


def test_transform_keys_resolve_to_the_paper_at_224_and_to_numbers_given():
    t = DataSection(size=224).transform()
    assert (t.train_short_side, t.crop, t.test_short_side, t.test_crop, t.num_crops) == ((256, 320), 224, 256, 256, 3)
    t = DataSection(size=32, train_short_side=(32, 40), test_short_side=36, test_crop=32, flip=False,
                    num_crops=2, mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2), ensemble="max_softmax").transform()
    assert t.to_dict() == {"train_short_side": [32, 40], "crop": 32, "flip": False, "test_short_side": 36,
                           "test_crop": 32, "num_crops": 2, "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.2, 0.2],
                           "ensemble": "max_softmax"}
    flips = {bool(TrainTransform(t)(np.arange(32)[None, None, :, None].repeat(32, 1).repeat(3, 3)
                                    .astype(np.uint8))[0, 0, 0, 0] > 0) for _ in range(20)}
    assert flips == {False}  # flip: false -> the left edge stays dark


@pytest.mark.parametrize("key,value,expected", [
    ("train_short_side", [20, 40], "data.train_short_side=[20, 40] is not allowed"),
    ("train_short_side", "big", "data.train_short_side='big' is not allowed"),
    ("test_short_side", 16, "data.test_short_side=16 is not allowed"),
    ("test_crop", 64, "data.test_crop=64 is not allowed"),
    ("short_clip", "wrap", "data.short_clip='wrap' is not allowed; expected pad_last, loop, skip or error"),
    ("ensemble", "median", "data.ensemble='median' is not allowed"),
    ("mean", [0.5, 0.5], "data.mean=[0.5, 0.5] is not allowed"),
    ("std", [0.2, 0.0, 0.2], "data.std=[0.2, 0.0, 0.2] is not allowed"),
    ("flip", "sometimes", "data.flip='sometimes' has the wrong type"),
])
def test_bad_transform_values_are_one_line_naming_the_key(key, value, expected, tmp_path, capsys):
    data = {"source": "video", "root": str(tmp_path), "size": 32, "test_short_side": 40, key: value}
    with pytest.raises(ConfigError) as err:
        RunConfig.from_dict({"data": data}, "run.yaml")
    assert str(err.value).startswith(f"run.yaml: {expected}") and "\n" not in str(err.value)
    path = tmp_path / "run.yaml"
    path.write_text(RunConfig().to_yaml())
    override = f"data.{key}={value}".replace("'", "")
    assert main(["train", str(path), "data.source=video", f"data.root={tmp_path}", "data.test_short_side=40",
                 override]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"data.{key}=" in lines[0]


def _tree(root: Path, frames: int = 16, per_class: int = 2) -> None:
    for split in ("train", "val"):
        for c in ("a", "b"):
            for i in range(per_class):
                write_video(root / split / c / f"{i}.mp4", corners(frames=frames), 8)


def test_test_views_count_as_configured(tmp_path):
    _tree(tmp_path)
    for clips, crops in ((1, 1), (4, 1), (2, 3)):
        config = RunConfig.from_dict({"data": {"source": "video", "root": str(tmp_path), "frames": 8,
                                               "sampling_rate": 1, "num_clips": clips, "num_crops": crops}})
        dm = build_datamodule(config)
        dm.setup("test")
        ds = dm.datasets["test"]
        assert len(ds) == 4 * clips * crops and dm.test_split == "val"
        assert {ds.view(i)[1:] for i in range(len(ds))} == {(c, k) for c in range(clips) for k in range(crops)}


def test_a_second_run_on_the_same_root_opens_no_video_to_probe_it(tmp_path, monkeypatch):
    _tree(tmp_path)
    opened: list[str] = []
    real_open = video_module.av.open
    monkeypatch.setattr(video_module.av, "open", lambda path, *a, **k: opened.append(path) or real_open(path, *a, **k))
    config = RunConfig.from_dict({"data": {"source": "video", "root": str(tmp_path / "."), "frames": 8,
                                           "sampling_rate": 1, "num_clips": 1, "num_crops": 1}})
    build_datamodule(config).setup()  # train, val, and val again as the test split
    assert sorted(opened) == sorted(str(p) for p in tmp_path.glob("*/*/*.mp4"))  # each of the 8 files once
    opened.clear()
    dm = build_datamodule(config)
    dm.setup()
    assert opened == [] and len(dm.indexes["train"]) == 4
    assert dm.indexes["val"].records[0].meta.frames == 16
    write_video(tmp_path / "val" / "a" / "0.mp4", corners(frames=24), 8)  # a changed file is probed again
    opened.clear()
    dm = build_datamodule(config)
    dm.setup()
    assert opened == [str(tmp_path / "val" / "a" / "0.mp4")] and dm.indexes["val"].records[0].meta.frames == 24


def test_no_cache_still_probes_a_split_used_twice_once(tmp_path, monkeypatch):
    _tree(tmp_path)
    opened: list[str] = []
    real_open = video_module.av.open
    monkeypatch.setattr(video_module.av, "open", lambda path, *a, **k: opened.append(path) or real_open(path, *a, **k))
    config = RunConfig.from_dict({"data": {"source": "video", "root": str(tmp_path), "frames": 8, "index_cache": None,
                                           "sampling_rate": 1, "num_clips": 1, "num_crops": 1}})
    build_datamodule(config).setup()
    assert len(opened) == 8 and not (tmp_path / "cache").exists()


@pytest.mark.integration
def test_the_record_states_transform_views_and_short_clips(tmp_path, capfd):
    _tree(tmp_path, frames=8)
    config = RunConfig.load(ROOT / "configs" / "smoke.yaml").replace(
        data={"source": "video", "root": str(tmp_path), "frames": 16, "batch_size": 2, "eval_batch_size": 4},
        recipe={"max_steps": 1}, measure={"enabled": False}, wandb={"enabled": False},
    )
    record = train_run(config, tmp_path / "run", progress=False)
    assert record["status"] == "ok", record.get("reason")
    data = record["data"]
    assert data["transform"]["train_short_side"] is None and data["transform"]["test_crop"] == 32
    assert data["test_views"] == {"clips": 1, "crops": 1, "split": "val"}
    assert data["sampling"] == {"num_frames": 16, "sampling_rate": 1, "num_clips": 1, "short_clip": "pad_last"}
    assert data["short_clips"]["train"] == {"videos": 4, "short": 4, "policy": "pad_last", "skipped": 0,
                                            "shortest_s": 1.0}
    err = capfd.readouterr().err
    summary = [line for line in err.splitlines() if "shorter than a 16x1 clip" in line]
    assert summary == ["nlbench: videos shorter than a 16x1 clip (16 frames): train 4/4, val 4/4, test 4/4; "
                       "short_clip=pad_last"]
    with pytest.raises(ConfigError, match=r"^data: sampling_rate=1: a 16x1 clip spans 16 frames"):
        train_run(config.replace(data={"short_clip": "error"}), tmp_path / "run2", progress=False)


def test_synthetic_run_ids_do_not_depend_on_the_video_keys():
    base = RunConfig.load(ROOT / "configs" / "tiny.yaml")
    assert base.run_id == RunConfig.from_dict({**base.to_dict(), "data": {
        **base.to_dict()["data"], "num_clips": 7, "short_clip": "error", "train_short_side": [72, 90]}}).run_id
    assert base.run_id != base.replace(data={"mean": [0.5, 0.5, 0.5]}).run_id  # read by both sources
    video = base.replace(data={"source": "video", "root": "/data"})
    assert video.run_id != video.replace(data={"short_clip": "loop"}).run_id
    assert video.run_id == video.replace(data={"index_cache": "/elsewhere"}).run_id


def test_res3_slots_of_the_c2d_see_four_even_frames():
    """docs/synthetic_data.md's temporal receptive field, measured: perturb one input frame at a time and see
    which res3 slots of the R50 C2D (the paper's strides) change."""
    from nlbench.models import make_config

    torch.manual_seed(0)
    model = make_config(depth=50, arch="c2d", width="small", num_classes=10).build().eval()
    out = {}
    model.layer2.register_forward_hook(lambda module, inputs, output: out.__setitem__("res3", output))
    x0 = torch.randn(1, 3, 16, 32, 32)
    with torch.no_grad():
        model(x0)
        base = out["res3"].clone()
        sees: dict[int, set[int]] = {slot: set() for slot in range(base.shape[2])}
        for frame in range(16):
            for sign in (1, -1):
                x = x0.clone()
                x[:, :, frame] += sign * 50 * torch.rand(1, 3, 32, 32)
                model(x)
                changed = (out["res3"] - base).abs().amax(dim=(0, 1, 3, 4)) > 1e-6
                for slot in changed.nonzero().flatten().tolist():
                    sees[slot].add(frame)
    assert {slot: sorted(frames) for slot, frames in sees.items()} == {0: [0, 2, 4, 6], 1: [8, 10, 12, 14]}


def test_data_bench_shows_each_stage(tmp_path, capsys):
    _tree(tmp_path)
    assert main(["data", "bench", str(tmp_path), "--workers", "0", "--batch-size", "2", "--batches", "2",
                 "--clips", "4", "--config", str(ROOT / "configs" / "smoke.yaml"), "--json"]) == 0
    import json

    out = json.loads(capsys.readouterr().out)
    stages = out["stages"]
    assert stages["clips"] == 4 and stages["clip"] == "16x1 at 32"
    assert all(stages[k] > 0 for k in ("open", "decode", "convert", "transform")) and stages["seek"] == 0
    assert sum(stages[k] for k in ("open", "seek", "decode", "convert", "transform")) <= stages["total_ms"] * 1.01
    assert out["loader"][0]["clip_shape"] == [3, 16, 32, 32]


@pytest.mark.parametrize("rule", ["mean_softmax", "mean_logits", "max_softmax"])
def test_ensemble_rules_against_a_float64_reference(rule):
    from nlbench.data.analysis import ensemble_views, view_scores

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(12, 5, generator=g, dtype=torch.float64)
    videos = torch.tensor([3, 0, 3, 1, 0, 3, 1, 1, 0, 3, 1, 0])
    ids, scores = ensemble_views(view_scores(logits, rule), videos, rule)
    assert ids.tolist() == [0, 1, 3]
    for k, v in enumerate(ids.tolist()):
        views = logits[videos == v]
        per_view = views if rule == "mean_logits" else torch.exp(views) / torch.exp(views).sum(1, keepdim=True)
        expected = per_view.max(0).values if rule == "max_softmax" else per_view.mean(0)
        assert torch.allclose(scores[k], expected, atol=1e-12)
