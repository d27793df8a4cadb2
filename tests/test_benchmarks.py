"""The benchmark scripts (benchmarks/) build what they say they measure: cheap checks, no timing."""
from __future__ import annotations

import json

import pytest

from nlbench.training import RunConfig


def test_benchmark_shapes_are_the_blocks_a_model_runs():
    """`make bench` and the calibration take their shapes from the models themselves (benchmarks.zoo_shapes):
    the paper's 5-block R50 C2D on 32x224x224 clips has 2 blocks in res3 and 3 in res4, at T = 4."""
    from benchmarks.zoo_shapes import _blocks_of

    shapes = _blocks_of({"depth": 50, "arch": "c2d", "nl_blocks": 5, "width": "paper"}, 32, 224, 8)
    assert [(s.channels, s.t, s.h, s.w) for s in shapes] == [(512, 4, 28, 28)] * 2 + [(1024, 4, 14, 14)] * 3
    assert all(s.inner_channels == s.channels // 2 and s.batch == 8 and s.subsample for s in shapes)


def test_video_training_benchmark_compares_the_same_clips(tmp_path):
    """benchmarks.video_training trains the same model on an export's files and on the export's own synthetic
    config from the cache: same clip shape, loader workers, steps and recipe; only the source differs."""
    from benchmarks.video_training import configs

    synthetic = {"frames": 8, "size": 24, "split_sizes": [80, 16, 16], "seed": 3, "distractors": [1, 2],
                 "noise": 2.0, "colours": 3}
    (tmp_path / "synthetic.json").write_text(json.dumps({"config": synthetic, "fps": 8}))
    runs = configs(tmp_path, RunConfig.load("configs/tiny.yaml"), steps=7, workers=1, cache_dir=tmp_path / "c")
    cached, video = runs["cached"].to_dict(), runs["video"].to_dict()
    assert cached["data"]["source"] == "synthetic" and video["data"] == {
        **video["data"], "source": "video", "root": str(tmp_path), "frames": 8, "size": 24, "num_workers": 1}
    assert {k: cached["data"][k] for k in ("frames", "size", "num_workers", "data_seed", "noise", "colours")} == {
        "frames": 8, "size": 24, "num_workers": 1, "data_seed": 3, "noise": 2.0, "colours": 3}
    assert list(cached["data"]["split_sizes"]) == [80, 16, 16] and list(cached["data"]["distractors"]) == [1, 2]
    assert {k: v for k, v in cached.items() if k != "data"} == {k: v for k, v in video.items() if k != "data"}
    assert cached["recipe"]["max_steps"] == 7
    with pytest.raises(SystemExit, match="synthetic.json"):
        configs(tmp_path / "c", RunConfig.load("configs/tiny.yaml"), 7, 1, tmp_path)
