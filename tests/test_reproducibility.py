"""Reproducible by construction: nothing but the config (tracking on or off, W&B group and tags, the sweep
runner, the number of loader workers, the measurement) changes a number of a run; paired seeds: the rows of a
table at one seed start from the same backbone weights.

Real training on the smoke profile, a few steps each; what is compared is the record's metrics and a hash of
the trained weights (model.pt), which moves with any change in the data order, the initial weights or the
dropout masks even where 4 steps leave the accuracies at chance.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from nlbench.data import LoaderConfig, VideoDataModule, write_video
from nlbench.data.datamodule import SeededShuffle
from nlbench.data.sampling import ClipSampling
from nlbench.data.transforms import ClipTransformConfig
from nlbench.models import make_config
from nlbench.training import RunConfig, read_record, train_run

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("status", "top1", "top5", "val_top1", "val_top5", "per_class", "per_family", "mean_class_top1",
           "curve", "steps", "nonlocal_blocks")


def config(tmp_path, **sections) -> RunConfig:
    """Smoke, with a non-local block and dropout (the global stream's one consumer), validated twice."""
    base = RunConfig.load(ROOT / "configs" / "smoke.yaml")
    return base.replace(
        seed=3, model={"nl_blocks": 1, "dropout": 0.5}, recipe={"max_steps": 4, "val_points": 2},
        data={"cache_dir": str(tmp_path / "cache")}, **sections,
    )


def weights_hash(run_dir: Path) -> str:
    state = torch.load(run_dir / "model.pt", weights_only=True)
    h = hashlib.sha256()
    for name in sorted(state):
        h.update(name.encode())
        h.update(state[name].detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def outcome(record: dict, run_dir: Path) -> dict:
    return {**{k: record.get(k) for k in METRICS}, "weights": weights_hash(run_dir)}


@pytest.fixture(scope="module")
def disabled_run(tmp_path_factory):
    """The reference: W&B disabled, the cost measured first (random batches through the model)."""
    tmp = tmp_path_factory.mktemp("disabled")
    mp = pytest.MonkeyPatch()
    mp.setenv("WANDB_MODE", "disabled")
    try:
        record = train_run(config(tmp), tmp / "run", progress=False)
    finally:
        mp.undo()
    return tmp, outcome(record, tmp / "run")


@pytest.mark.integration
def test_tracking_and_measurement_change_no_number(disabled_run, tmp_path, monkeypatch):
    cache, reference = disabled_run
    assert reference["status"] == "ok"
    monkeypatch.setenv("WANDB_MODE", "offline")
    same = config(cache, measure={"enabled": False})  # same run_id: the measurement is not part of it
    offline = train_run(same, tmp_path / "offline", progress=False)
    tagged = train_run(same, tmp_path / "tagged", progress=False, wandb_group="tiny/2a",
                       wandb_tags=("2a", "NL C2D", "seed=3"))
    assert list((tmp_path / "tagged" / "wandb").glob("offline-run-*"))  # W&B did run
    assert outcome(offline, tmp_path / "offline") == reference
    assert outcome(tagged, tmp_path / "tagged") == reference


@pytest.mark.integration
def test_curve_has_val_points_points_ending_at_the_last_step(disabled_run):
    _, reference = disabled_run
    curve = reference["curve"]
    assert [p["step"] for p in curve] == [2, 4] and reference["steps"] == 4
    d = RunConfig.load(ROOT / "configs" / "smoke.yaml").data
    per_epoch = d.split_sizes[0] // d.batch_size  # 48 training clips in batches of 8: 6 steps an epoch
    assert per_epoch == 6 and [p["epoch"] for p in curve] == [round(step / per_epoch, 4) for step in (2, 4)]
    assert curve[-1]["val_top1"] == reference["val_top1"]


@pytest.mark.integration
def test_record_says_what_each_block_attends_over(disabled_run):
    cache, reference = disabled_run
    (block,) = reference["nonlocal_blocks"]
    model = config(cache).model.as_model_config(2).build()
    (name, nl), = model.placed_blocks().items()
    stage = {"layer1": "res2", "layer2": "res3", "layer3": "res4", "layer4": "res5"}[name.split(".")[0]]
    t, h, w = model.feature_shapes((16, 32, 32))[stage]  # the conv arithmetic, against the hooks' reading
    pt, ph, pw = nl.pool_kernel if nl.subsample else (1, 1, 1)
    assert block == {"name": name, "input_thw": [t, h, w], "keys": (t // pt) * (h // ph) * (w // pw)}


@pytest.mark.integration
@pytest.mark.slow
def test_sweep_runner_with_two_workers_gives_the_same_records(tmp_path, monkeypatch):
    from nlbench.sweep import runner

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    base = config(tmp_path)
    (tmp_path / "run.yaml").write_text(base.to_yaml())
    profiles = {"repro": {"config": str(tmp_path / "run.yaml"), "seeds": [3]}}
    (tmp_path / "profiles.yaml").write_text(yaml.safe_dump(profiles))
    table = {"table": "tr", "title": "repro", "baseline": "C2D", "defaults": {},
             "rows": [{"row": "C2D", "model": {"nl_blocks": 0}, "paper": None},
                      {"row": "NL", "model": {"nl_blocks": 1}, "paper": None}]}
    (tmp_path / "tr.yaml").write_text(yaml.safe_dump(table))
    runner.run_sweep(tmp_path / "tr.yaml", "repro", workers=2, progress=False, results_dir=tmp_path / "results",
                     profiles_path=tmp_path / "profiles.yaml")
    for nl_blocks in (0, 1):
        cfg = base.replace(model={"nl_blocks": nl_blocks})
        swept = tmp_path / "results" / "repro" / "runs" / cfg.run_id
        single = train_run(cfg, tmp_path / f"single{nl_blocks}", progress=False)
        assert outcome(read_record(swept), swept) == outcome(single, tmp_path / f"single{nl_blocks}")


def test_making_a_config_draws_nothing_from_the_global_generator(tmp_path):
    # A run's W&B line and W&B config compute its run_id, which builds the model config, whose knobs
    # are checked by a throwaway non-local block: its init drew from the global generator, so a tracked
    # run trained on other numbers than an untracked one.
    torch.manual_seed(0)
    before = torch.get_rng_state()
    cfg = config(tmp_path).replace(model={"nl_blocks": 5, "instantiation": "dot_product"})
    assert cfg.run_id and cfg.model.as_model_config(10).resolved_knobs()
    assert torch.equal(torch.get_rng_state(), before)


# ---------------------------------------------------------------------------------------------- data


def test_training_order_depends_on_the_seed_and_epoch_only():
    sampler = SeededShuffle(50, seed=3)
    first = list(sampler)
    torch.manual_seed(123)  # whatever the global generator does
    torch.rand(7)
    assert list(sampler) == first  # iterating again (a second loader, a restarted one) repeats the epoch
    sampler.set_epoch(1)
    assert list(sampler) != first and sorted(sampler) == list(range(50))
    sampler.set_epoch(0)
    assert list(sampler) == first and list(SeededShuffle(50, seed=4)) != first


def test_video_augmentation_does_not_depend_on_the_worker_count(tmp_path, monkeypatch):
    monkeypatch.setenv("NLBENCH_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        for v in range(3):
            write_video(tmp_path / "data" / "train" / cls / f"{v}.mp4", rng.integers(0, 255, (24, 40, 56, 3), np.uint8), 8)
    transform = ClipTransformConfig.resolve(32, flip=True)  # scale jitter, random crop, flip

    def epochs(workers: int) -> list[torch.Tensor]:
        loader = LoaderConfig(batch_size=2, num_workers=workers, persistent_workers=False)
        dm = VideoDataModule(tmp_path / "data", ClipSampling(num_frames=4, sampling_rate=2), transform, loader,
                             test_split="train", seed=5)
        dl = dm.train_dataloader()
        out = []
        for epoch in (0, 1):
            dl.sampler.set_epoch(epoch)
            out.append(torch.cat([clips for clips, _ in dl]))
        return out

    serial, parallel = epochs(0), epochs(2)
    assert all(torch.equal(a, b) for a, b in zip(serial, parallel))
    assert not torch.equal(serial[0], serial[1])  # a new epoch: a new order and new crops


# --------------------------------------------------------------------------------------------- model


def _state(seed: int, **kwargs) -> dict[str, torch.Tensor]:
    model = make_config(depth=50, width="small", num_classes=10, **kwargs).build(seed=seed)
    return {k: v for k, v in model.state_dict().items() if "nonlocal" not in k}


@pytest.mark.parametrize("nl", [
    {"nl_blocks": 5},
    {"nl_blocks": 1, "nl_stage": "res3"},
    {"nl_blocks": 10, "instantiation": "dot_product", "init": "caffe2", "inner_ratio": 0.25},
    {"nl_blocks": 1, "init": "zero_conv", "W_z_bias": True, "subsample": False},
])
def test_nonlocal_blocks_change_no_backbone_weight(nl):
    plain = _state(7)
    with_nl = _state(7, **nl)
    assert plain.keys() == with_nl.keys()
    assert all(torch.equal(plain[k], with_nl[k]) for k in plain), [k for k in plain if not torch.equal(plain[k], with_nl[k])]
    other = _state(8, **nl)
    assert not torch.equal(other["layer2.0.conv1.weight"], with_nl["layer2.0.conv1.weight"])


def test_a_block_keeps_its_weights_wherever_the_other_blocks_are():
    def block(**kwargs):
        model = make_config(depth=50, width="small", num_classes=10, **kwargs).build(seed=7)
        return model.placed_blocks()

    five, ten = block(nl_blocks=5), block(nl_blocks=10)
    shared = set(five) & set(ten)
    assert shared
    for name in shared:
        a, b = five[name].state_dict(), ten[name].state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_i3d_shares_the_c2d_layers_of_the_same_shape():
    c2d, i3d = _state(7), _state(7, arch="i3d_3x1x1")
    same = [k for k in c2d if c2d[k].shape == i3d[k].shape]
    assert "fc.weight" in same and len(same) < len(c2d)
    assert all(torch.equal(c2d[k], i3d[k]) for k in same)
