"""Data: the synthetic benchmark (determinism, exact balance, every clip's family and class read back from
its pixels, cue colours uninformative alone),
the video pipeline (decode, seek, loop, VFR, containers, unreadable files), transforms, DataModules
and the `nlbench data` command line."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from nlbench.cli import main
from nlbench.data import (
    CLASS_NAMES,
    ClipSampling,
    ClipTransformConfig,
    LoaderConfig,
    SyntheticClips,
    SyntheticConfig,
    SyntheticDataModule,
    UnreadableVideoWarning,
    VideoClips,
    VideoDataModule,
    VideoReader,
    average_views,
    build_index,
    collate_clips,
    export_synthetic,
    generate,
    per_class_accuracy,
    probe,
    scan_root,
    write_video,
)
from nlbench.data.analysis import accuracy_by_group
from nlbench.data.splits import SPLITS
from nlbench.data.synthetic import BACKGROUND, FAMILIES, PALETTE
from nlbench.data.transforms import TrainTransform, random_box, view_boxes

SMALL = SyntheticConfig(frames=8, size=32, split_sizes=(24, 16, 16))


@pytest.fixture(autouse=True)
def _probe_cache(tmp_path, monkeypatch):
    """Every test indexes with its own probe cache (none of them writes to ~/.cache)."""
    monkeypatch.setenv("NLBENCH_CACHE_DIR", str(tmp_path / "cache"))


# ---------------------------------------------------------------------------------------------------
# An independent reading of a synthetic clip: label the objects in the raw pixels (8-connected regions of
# one palette colour), tell the solid cue squares from the distractor rings by shape, and say which family
# (layout of the cue pair in space and time) and which class (same or different colour) the clip shows,
# from that geometry alone: no use of the generator's sprites, placement or drawing code.


def _objects(frame: np.ndarray) -> list[dict]:
    from scipy import ndimage

    colours = np.vstack([np.full(3, BACKGROUND), PALETTE]).astype(np.float32)
    nearest = np.linalg.norm(frame[:, :, None, :].astype(np.float32) - colours, axis=-1).argmin(-1) - 1
    found = []
    for colour in np.unique(nearest[nearest >= 0]):
        regions, n = ndimage.label(nearest == colour, structure=np.ones((3, 3)))  # 8-connected flood fill
        for k, (rows, cols) in enumerate(ndimage.find_objects(regions), start=1):
            mask = regions[rows, cols] == k
            found.append({"colour": int(colour), "box": (rows.start, cols.start, rows.stop, cols.stop),
                          "mask": mask})
    return found


def _shape(obj, s) -> str:
    """'square' (solid s x s), 'ring' (an s x s outline with a background centre) or 'other'."""
    mask = obj["mask"]
    if mask.shape != (s, s):
        return "other"
    if mask.all():
        return "square"
    border = np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]])
    return "ring" if border.all() and not mask[s // 2, s // 2] else "other"


def _gap(a, b) -> int:
    """Background pixels between two boxes along the axis where they are furthest apart (< 1: touching)."""
    return max(max(a[0], b[0]) - min(a[2], b[2]), max(a[1], b[1]) - min(a[3], b[3]))


def _corner(box, size) -> tuple[int, int] | None:
    """Which corner of the frame (0/1 down, 0/1 right) a box sits in, within size/8 of both edges."""
    reach = size // 8
    ys = [v for v, near in ((0, box[0] <= reach), (1, size - box[2] <= reach)) if near]
    xs = [v for v, near in ((0, box[1] <= reach), (1, size - box[3] <= reach)) if near]
    return (ys[0], xs[0]) if len(ys) == len(xs) == 1 else None


def _opposite(a, b, size) -> bool:
    ca, cb = _corner(a, size), _corner(b, size)
    return ca is not None and cb is not None and ca[0] != cb[0] and ca[1] != cb[1]


def read_clip(frames: np.ndarray, s: int) -> dict:
    """What the pixels of a clip show: ``family``, ``relation`` (None: no family's layout), the cue
    colours in a reading order (local and space: by position; time and spacetime: by time) and the
    number of distractor rings per frame. Asserts that every object is a square or a ring and that no
    ring touches a cue."""
    T, size = frames.shape[0], frames.shape[1]
    cues, rings = [], []
    for t, frame in enumerate(frames):
        objects = _objects(frame)
        shapes = [_shape(o, s) for o in objects]
        assert "other" not in shapes, f"frame {t}: an object that is neither a cue square nor a ring"
        squares = sorted(((o["box"], o["colour"]) for o, k in zip(objects, shapes) if k == "square"))
        frame_rings = [o["box"] for o, k in zip(objects, shapes) if k == "ring"]
        assert all(_gap(r, c) >= 1 for r in frame_rings for c, _ in squares), f"frame {t}: a ring touches a cue"
        cues.append(squares)
        rings.append(len(frame_rings))
    out = {"family": None, "relation": None, "colours": None, "rings": rings}
    counts = [len(c) for c in cues]
    if counts == [2] * T and all(c == cues[0] for c in cues):  # a static pair in every frame
        (a, ca), (b, cb) = cues[0]
        aligned = a[0] == b[0] and a[2] == b[2] or a[1] == b[1] and a[3] == b[3]
        family = "local" if aligned and 1 <= _gap(a, b) <= 2 else "space" if _opposite(a, b, size) else None
        colours = (ca, cb)
    elif counts == [1] * T:  # one cue at a time: the first (box, colour) for the first half, then the second
        half = T // 2
        (a, ca), (b, cb) = cues[0][0], cues[half][0]
        if not (all(c == cues[0] for c in cues[:half]) and all(c == cues[half] for c in cues[half:])):
            return out  # a change anywhere but at the middle frame
        family = "time" if a == b else "spacetime" if _opposite(a, b, size) else None
        colours = (ca, cb)
    else:
        return out
    if family is not None:
        out.update(family=family, relation="same" if colours[0] == colours[1] else "different", colours=colours)
    return out


def _check_split(config: SyntheticConfig, split: str = "train") -> dict:
    """Reads every clip of a split from its pixels; returns the counts per (family, relation) read."""
    seen: dict = {}
    for i in range(config.split_size(split)):
        clip = generate(config, split, i)
        read = read_clip(clip.frames, config.sprite_size)
        assert (read["family"], read["relation"]) == (clip.family, CLASS_NAMES[clip.label]), f"{split} clip {i}"
        assert (clip.family, clip.label) == (config.family(i), config.label(i)), f"{split} clip {i}"
        distractors = [sp for sp in clip.sprites if sp.role == "distractor"]
        assert read["rings"] == [sum(sp.tops[t] is not None for sp in distractors) for t in range(config.frames)]
        key = (read["family"], read["relation"])
        seen[key] = seen.get(key, 0) + 1
    return seen


@pytest.mark.parametrize(
    "config",
    [
        SyntheticConfig(frames=8, size=32, split_sizes=(160, 8, 8)),
        SyntheticConfig(frames=16, size=64, split_sizes=(96, 8, 8), seed=3),  # the tiny profile's geometry
        SyntheticConfig(frames=4, size=24, split_sizes=(80, 8, 8), colours=6, noise=10.0, seed=5),
    ],
    ids=["8x32", "16x64", "4x24-6colours"],
)
def test_every_clip_shows_its_family_and_class_in_its_pixels(config):
    seen = _check_split(config)
    per_cell = config.split_size("train") // 8
    assert seen == {(f, r): per_cell for f in FAMILIES for r in CLASS_NAMES}


@pytest.mark.parametrize("config", [
    SyntheticConfig(frames=8, size=32, split_sizes=(96, 8, 8), distractors=(1, 3), seed=2),
    SyntheticConfig(split_sizes=(48, 8, 8), distractors=(2, 4), colours=3),
], ids=["8x32", "16x64"])
def test_distractors_are_rings_that_never_touch_a_cue(config):
    n = config.split_size("train")
    seen = _check_split(config)
    assert seen == {(f, r): n // 8 for f in FAMILIES for r in CLASS_NAMES}
    sprites = [generate(config, "train", i).sprites for i in range(n)]
    distractors = [sp for clip in sprites for sp in clip if sp.role == "distractor"]
    assert len(distractors) > n and {sp.shape for sp in distractors} == {"ring"}
    # Some of them move, and each shows for at least half of the clip.
    assert any(len({t for t in sp.tops if t is not None}) > 1 for sp in distractors)
    assert all(sum(t is not None for t in sp.tops) >= config.frames // 2 for sp in distractors)
    # The default set has none (the tiny profile's choice).
    assert not [sp for sp in generate(SyntheticConfig(split_sizes=(8, 8, 8)), "train", 0).sprites
                if sp.role == "distractor"]


@pytest.mark.parametrize("frames", [4, 6, 16])
def test_temporal_cues_show_exactly_in_the_two_halves(frames):
    config = SyntheticConfig(frames=frames, size=32, split_sizes=(64, 8, 8))
    half = frames // 2
    assert config.cue_spans == (range(0, half), range(half, frames))
    for i in range(64):
        clip = generate(config, "train", i)
        first, second = (sp.tops for sp in clip.sprites if sp.role == "cue")
        shown = [[t for t, top in enumerate(tops) if top is not None] for tops in (first, second)]
        if clip.family in ("time", "spacetime"):
            assert shown == [list(range(half)), list(range(half, frames))], f"clip {i}"
        else:
            assert shown == [list(range(frames))] * 2, f"clip {i}"
        # In the pixels: a single cue in each frame, its box or colour changing at the middle frame only
        # (a time clip of the same colour shows one unchanging square).
        cues = [[o for o in _objects(f) if _shape(o, config.sprite_size) == "square"] for f in clip.frames]
        if clip.family in ("time", "spacetime"):
            reading = [(o[0]["box"], o[0]["colour"]) for o in cues]
            changes = [t for t in range(1, frames) if reading[t] != reading[t - 1]]
            assert changes == ([] if clip.family == "time" and clip.label == 0 else [half]), f"clip {i}"


@pytest.mark.parametrize("colours", [2, 3])
def test_each_cue_colour_alone_is_uniform_within_each_class(colours):
    """Within "same" and within "different" (and within each family of each), each cue's colour (read from
    the pixels, at a position or a time) is uniform over the colours: one cue says nothing about the class.
    Chi-square over 480 clips (p > 0.001; the clips are fixed by the seed, so the outcome is too)."""
    from scipy.stats import chisquare

    config = SyntheticConfig(frames=4, size=24, split_sizes=(480, 8, 8), colours=colours, noise=0.0)
    counts = np.zeros((2, len(FAMILIES), 2, colours), int)  # class, family, cue (reading order), colour
    pairs = np.zeros((2, colours, colours), int)
    for i in range(480):
        clip = generate(config, "train", i)
        read = read_clip(clip.frames, config.sprite_size)
        a, b = read["colours"]
        counts[clip.label, FAMILIES.index(read["family"]), 0, a] += 1
        counts[clip.label, FAMILIES.index(read["family"]), 1, b] += 1
        pairs[clip.label, a, b] += 1
    for label in range(2):
        for cue in range(2):
            total = counts[label, :, cue].sum(0)  # 240 clips of the class
            assert chisquare(total).pvalue > 1e-3, (CLASS_NAMES[label], cue, total)
            for f, family in enumerate(FAMILIES):  # 60 clips of the class in each family
                assert chisquare(counts[label, f, cue]).pvalue > 1e-3, (CLASS_NAMES[label], family, cue)
    # "same" pairs are (c, c); "different" pairs cover every ordered pair of distinct colours evenly.
    same, different = pairs
    assert (same == np.diag(np.diag(same))).all() and (np.diag(different) == 0).all()
    off = different[~np.eye(colours, dtype=bool)]
    assert chisquare(off).pvalue > 1e-3 and off.min() > 0


def test_same_seed_same_bytes_in_any_order_other_seed_other_bytes():
    config = SyntheticConfig(frames=8, size=32, split_sizes=(16, 16, 16), distractors=(0, 2))
    forward = [generate(config, "train", i).frames for i in range(16)]
    np.random.seed(1)  # numpy's global generator plays no part
    order = [generate(config, split, i) for i in (9, 3, 15) for split in ("val", "train", "test")]
    backward = [generate(config, "train", i).frames for i in reversed(range(16))][::-1]
    assert all(a.tobytes() == b.tobytes() for a, b in zip(forward, backward))
    assert [c.frames.tobytes() for c in order[1::3]] == [forward[i].tobytes() for i in (9, 3, 15)]
    again = generate(config, "train", 5)
    assert again.sprites == generate(config, "train", 5).sprites and again.family == config.family(5)
    other = SyntheticConfig(frames=8, size=32, split_sizes=(16, 16, 16), distractors=(0, 2), seed=1)
    assert all(generate(other, "train", i).frames.tobytes() != f.tobytes() for i, f in enumerate(forward))
    assert all(generate(config, "val", i).frames.tobytes() != forward[i].tobytes() for i in range(16))
    assert len({f.tobytes() for f in forward}) == 16
    ds = SyntheticClips(config, "train")
    assert torch.equal(ds[3][0], ds[3][0]) and ds[3][0].dtype == torch.float32 and ds[3][1] == config.label(3)
    with pytest.raises(IndexError, match="out of range 0..15"):
        generate(config, "train", 16)
    with pytest.raises(ValueError, match="split='dev'"):
        generate(config, "dev", 0)


@pytest.mark.parametrize("families", [FAMILIES, ("time", "space"), ("spacetime",)])
def test_class_and_family_balance_is_exact(families):
    cells = 2 * len(families)
    config = SyntheticConfig(frames=4, size=24, split_sizes=(5 * cells, cells, 3 * cells), families=families)
    every_cell = sorted((f, k) for f in families for k in (0, 1))
    for split in SPLITS:
        ds = SyntheticClips(config, split)
        pairs = [(c.family, c.label) for c in map(ds.clip, range(len(ds)))]
        assert pairs == list(zip(ds.families.tolist(), ds.labels.tolist()))
        assert len(pairs) == config.split_size(split)
        # every run of 2 x len(families) clips holds each (family, class) once: any prefix of a split that is
        # a multiple of it (a subset of validation clips, a test set) is balanced too
        for start in range(0, len(pairs), cells):
            assert sorted(pairs[start : start + cells]) == every_cell, (split, start)
    # the default benchmark: 8000 / 1000 / 1000 clips, 2 classes x 4 families
    default = SyntheticConfig()
    assert default.split_sizes == (8000, 1000, 1000) and default.classes == CLASS_NAMES == ("same", "different")
    for split in SPLITS:
        ds = SyntheticClips(default, split)
        table = np.zeros((len(FAMILIES), 2), int)
        np.add.at(table, ([FAMILIES.index(f) for f in ds.families], ds.labels), 1)
        assert (table == len(ds) // 8).all()


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"split_sizes": (20, 8, 8)}, "split_sizes=(20, 8, 8) is not allowed; expected three positive multiples of 8 "
                                      "(2 classes x 4 families"),
        ({"split_sizes": (8, 8)}, "split_sizes=(8, 8) is not allowed"),
        ({"split_sizes": (0, 8, 8)}, "split_sizes=(0, 8, 8) is not allowed"),
        ({"split_sizes": (6, 4, 4), "families": ("time", "space")},
         "split_sizes=(6, 4, 4) is not allowed; expected three positive multiples of 4 (2 classes x 2 families"),
        ({"frames": 7}, "frames=7 is not allowed; expected an even int >= 4"),
        ({"frames": 2}, "frames=2 is not allowed"),
        ({"size": 33}, "size=33 is not allowed; expected an even int >= 24"),
        ({"size": 22}, "size=22 is not allowed"),
        ({"families": ("motion",)}, "families=('motion',) is not allowed; expected distinct names from "
                                    "('local', 'space', 'time', 'spacetime')"),
        ({"families": ("time", "time")}, "families=('time', 'time') is not allowed"),
        ({"families": ()}, "families=() is not allowed"),
        ({"distractors": (3, 1)}, "distractors=(3, 1) is not allowed; expected (min, max)"),
        ({"noise": -1.0}, "noise=-1.0 is not allowed; expected 0 to 64"),
        ({"colours": 1}, "colours=1 is not allowed; expected 2 to 6"),
        ({"colours": 7}, "colours=7 is not allowed; expected 2 to 6"),
        ({"seed": -1}, "seed=-1 is not allowed"),
    ],
)
def test_config_validation_names_the_bad_value_in_one_line(kwargs, message):
    import re

    with pytest.raises(ValueError, match="^SyntheticConfig: " + re.escape(message)) as err:
        SyntheticConfig(**kwargs)
    assert "\n" not in str(err.value)


def test_per_class_view_and_accuracy_table():
    config = SyntheticConfig(frames=4, size=24, split_sizes=(8, 8, 16))
    ds = SyntheticClips(config, "test")
    per_class = ds.indices_per_class()
    assert list(per_class) == list(CLASS_NAMES) and all(len(v) == 8 for v in per_class.values())
    assert all(ds.clip(int(i)).label == CLASS_NAMES.index(k) for k, v in per_class.items() for i in v)
    preds = ds.labels.copy()
    wrong = per_class["same"][ds.families[per_class["same"]] == "time"]  # both "same" time clips
    assert len(wrong) == 2
    preds[wrong] = CLASS_NAMES.index("different")
    table = ds.per_class_accuracy(preds).set_index("class")
    assert table.loc["same", "accuracy"] == 6 / 8 and table.loc["same", "confused_with"] == "different"
    assert table.loc["different", "accuracy"] == 1.0 and table["correct"].sum() == 14
    groups = accuracy_by_group(per_class_accuracy(preds, ds.labels, CLASS_NAMES, groups=("a", "a")))
    assert groups.set_index("group").loc["a", "accuracy"] == 14 / 16
    with pytest.raises(ValueError, match="outside"):
        per_class_accuracy([2], [0], CLASS_NAMES)


def test_average_views_averages_scores_per_video():
    scores = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.2, 0.8], [0.4, 0.6]])
    ids, mean = average_views(scores, torch.tensor([1, 1, 0, 0]))
    assert ids.tolist() == [0, 1]
    assert torch.allclose(mean, torch.tensor([[0.3, 0.7], [0.5, 0.5]], dtype=torch.float64))


# ---------------------------------------------------------------------------------------------------
# Video files


def numbered(n: int, h: int = 48, w: int = 64) -> np.ndarray:
    """Frames that carry their own index in 10 black/white 8x8 blocks (survives any codec)."""
    frames = np.zeros((n, h, w, 3), np.uint8)
    for i in range(n):
        for b in range(10):
            if i >> b & 1:
                frames[i, (b // 5) * 8 : (b // 5) * 8 + 8, (b % 5) * 8 : (b % 5) * 8 + 8] = 255
    return frames


def ids(frames) -> list[int]:
    frames = np.asarray(frames)
    return [sum(int(f[(b // 5) * 8 + 4, (b % 5) * 8 + 4].mean() > 128) << b for b in range(10)) for f in frames]


@pytest.mark.parametrize("name,codec", [("v.mp4", "libx264"), ("v.webm", "libvpx-vp9"), ("v.avi", "mpeg4")])
def test_each_container_seeks_to_a_late_clip_instead_of_decoding_from_the_start(tmp_path, name, codec):
    path = write_video(tmp_path / name, numbered(250), 25, codec=codec, options={"g": "25"})
    meta = probe(path)
    assert (meta.width, meta.height, meta.fps) == (64, 48, 25.0) and meta.duration == pytest.approx(10.0)
    with VideoReader(path) as reader:
        clip = reader.read(ClipSampling(8, 2).times(8.0, meta.fps, meta.duration))
        assert ids(clip) == list(range(200, 216, 2))
        assert reader.frames_decoded < 50  # one GOP (25) plus the clip's 16 frames, not 216


def test_variable_frame_rate_is_sampled_by_timestamps(tmp_path):
    pts = [0, 100, 150, 400, 450, 700, 900, 1000]  # ms
    path = write_video(tmp_path / "vfr.mp4", numbered(8), 8, pts=pts, time_base=Fraction(1, 1000))
    with VideoReader(path) as reader:
        times = np.array([0.0, 0.12, 0.2, 0.42, 0.5, 0.95])
        expected = [int(np.searchsorted(np.array(pts) / 1000, t, side="right") - 1) for t in times]
        assert expected == [0, 1, 2, 3, 4, 6]
        assert ids(reader.read(times)) == expected


def _short_and_long(root: Path):
    write_video(root / "train" / "a" / "short.mp4", numbered(4), 8)
    write_video(root / "train" / "b" / "long.mp4", numbered(16), 8)
    return build_index(root, "train")


@pytest.mark.parametrize("policy,frames", [("loop", [0, 1, 2, 3] * 2), ("pad_last", [0, 1, 2, 3] + [3] * 4)])
def test_short_clip_policies_that_read_the_short_video(tmp_path, policy, frames):
    index = _short_and_long(tmp_path)
    sampling = ClipSampling(8, 1, 1, short_clip=policy)
    ds = VideoClips(index, sampling, ClipTransformConfig.scaled(32, jitter=False, num_crops=1), mode="test")
    assert ds.short_clips == {"videos": 2, "short": 1, "policy": policy, "skipped": 0, "shortest_s": 0.5}
    assert len(ds) == 2
    meta = index.records[0].meta
    with VideoReader(index.records[0].path) as reader:
        assert ids(reader.read(sampling.times(0.0, meta.fps, meta.duration))) == frames
    assert ds[0][0].shape == (3, 8, 32, 32)


def test_short_clip_skip_leaves_the_short_video_out_and_error_is_one_line(tmp_path):
    index = _short_and_long(tmp_path)
    ds = VideoClips(index, ClipSampling(8, 1, 1, short_clip="skip"), ClipTransformConfig.scaled(32, jitter=False))
    assert len(ds) == 1 and ds.records[0].path.name == "long.mp4" and ds.short_clips["skipped"] == 1
    assert ds[0][1] == 1  # the long video keeps its own label
    with pytest.raises(ValueError, match=r"^sampling_rate=1: a 8x1 clip spans 8 frames .* 1 of 2 videos") as err:
        VideoClips(index, ClipSampling(8, 1, 1, short_clip="error"), ClipTransformConfig.scaled(32, jitter=False))
    assert "\n" not in str(err.value)
    # 16x2 makes the 16-frame video short too: under error, a run that would lose frames stops
    with pytest.raises(ValueError, match="2 of 2 videos"):
        VideoClips(index, ClipSampling(16, 2, 1, short_clip="error"), ClipTransformConfig.scaled(32, jitter=False))
    with pytest.raises(ValueError, match="short_clip=skip leaves no video"):
        VideoClips(index, ClipSampling(16, 2, 1, short_clip="skip"), ClipTransformConfig.scaled(32, jitter=False))
    with pytest.raises(ValueError, match="short_clip='wrap'"):
        ClipSampling(8, 1, 1, short_clip="wrap")


def _tree(root: Path, files: dict[str, np.ndarray]) -> None:
    for rel, frames in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        write_video(root / rel, frames, 8, codec="libvpx-vp9" if rel.endswith(".webm") else "libx264")


def test_unreadable_files_are_left_out_counted_and_labels_stay(tmp_path):
    _tree(tmp_path, {f"train/{c}/{c}{i}.mp4": numbered(16) for c in "abc" for i in range(2)})
    _tree(tmp_path, {"train/b/cut.mp4": numbered(64), "train/c/cut.webm": numbered(64)})
    for rel in ("train/b/cut.mp4", "train/c/cut.webm"):
        data = (tmp_path / rel).read_bytes()
        (tmp_path / rel).write_bytes(data[: len(data) // 2])
    (tmp_path / "train/a/text.mp4").write_text("not a video")
    with pytest.warns(UnreadableVideoWarning) as record:
        index = build_index(tmp_path, "train")
    assert len(record) == 3 and len(index.unreadable) == 3
    reasons = {p.name: r for p, r in index.unreadable}
    assert "cannot open" in reasons["text.mp4"] and "cannot open" in reasons["cut.mp4"]
    assert "truncated" in reasons["cut.webm"]
    assert [(r.path.name, index.class_names[r.label]) for r in index.records] == [
        (f"{c}{i}.mp4", c) for c in "abc" for i in range(2)
    ]
    report = scan_root(tmp_path)
    assert (report.splits[0].videos, len(report.splits[0].unreadable)) == (6, 3)


def test_a_file_that_breaks_after_indexing_is_dropped_from_its_batch_only(tmp_path):
    _tree(tmp_path, {f"train/{c}/{c}.mp4": numbered(8) for c in "ab"})
    index = build_index(tmp_path, "train")
    (tmp_path / "train/a/a.mp4").write_bytes(b"gone")
    ds = VideoClips(index, ClipSampling(8, 1, 1), ClipTransformConfig.scaled(32, jitter=False), mode="train")
    with pytest.warns(UnreadableVideoWarning, match="a.mp4"):
        batch = collate_clips([ds[0], ds[1]])
    clips, labels = batch
    assert clips.shape[0] == 1 and labels.tolist() == [1] and list(ds.failures) == [tmp_path / "train/a/a.mp4"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one warning per file, not one per access
        assert collate_clips([ds[0]]) is None


def test_csv_manifests_label_by_row_and_win_over_folders(tmp_path):
    _tree(tmp_path, {"clips/x.mp4": numbered(8), "clips/y.webm": numbered(8), "train/zzz/ignored.mp4": numbered(8)})
    _manifest(tmp_path, "train", ["clips/x.mp4,dog", "clips/y.webm,cat"])
    _manifest(tmp_path, "val", ["clips/y.webm,dog"])
    index = build_index(tmp_path, "train")
    assert index.class_names == ("cat", "dog") and index.source == tmp_path / "train.csv"
    assert [(r.path.name, r.label) for r in index.records] == [("x.mp4", 1), ("y.webm", 0)]
    assert [r.label for r in build_index(tmp_path, "val").records] == [1]
    _manifest(tmp_path, "val", [])
    with pytest.raises(ValueError, match="split 'val' is empty"):
        build_index(tmp_path, "val")


def test_portrait_odd_size_video_gives_test_views_along_its_long_side(tmp_path):
    _tree(tmp_path, {"val/a/portrait.webm": numbered(20, h=61, w=45)})
    index = build_index(tmp_path, "val", classes=("a",))
    assert (index.records[0].meta.width, index.records[0].meta.height) == (45, 61)
    transform = ClipTransformConfig(train_short_side=(40, 48), crop=32, test_short_side=40, test_crop=40, num_crops=3)
    ds = VideoClips(index, ClipSampling(4, 2, num_clips=2), transform, mode="test")
    assert len(ds) == 6 and [ds.view(i) for i in range(6)] == [(0, c, k) for c in range(2) for k in range(3)]
    clip, label, video = ds[5]
    assert clip.shape == (3, 4, 40, 40) and (label, video) == (0, 0)
    boxes = view_boxes(61, 45, 40, 40, 3)
    assert [b[1] for b in boxes] == [0, 0, 0] and [b[0] for b in boxes] == [0, 8, 16]  # top, centre, bottom


def test_test_views_are_evenly_spaced_clips_times_crops(tmp_path):
    _tree(tmp_path, {"test/a/x.mp4": numbered(80), "test/b/y.mp4": numbered(40)})
    index = build_index(tmp_path, "test", classes=("a", "b"))
    transform = ClipTransformConfig.scaled(32, num_crops=3)
    ds = VideoClips(index, ClipSampling(4, 2, num_clips=5), transform, mode="test")
    assert len(ds) == 2 * 5 * 3
    items = [ds[i] for i in range(len(ds))]
    assert all(x.shape == (3, 4, transform.test_crop, transform.test_crop) for x, _, _ in items)
    assert [v for _, _, v in items] == [0] * 15 + [1] * 15 and [y for _, y, _ in items] == [0] * 15 + [1] * 15
    # Clip starts 0 .. duration - span, evenly: x.mp4 has 80 frames, a 4x2 clip spans 8.
    starts = ClipSampling(4, 2, num_clips=5).test_starts(8.0, 10.0)
    assert np.allclose(starts * 8, [0, 18, 36, 54, 72])
    with VideoReader(index.records[0].path) as reader:
        assert ids(reader.read(ClipSampling(4, 2).times(starts[2], 8.0, 10.0))) == [36, 38, 40, 42]


# ---------------------------------------------------------------------------------------------------
# Transforms


def test_train_crop_flip_is_one_choice_for_all_frames():
    torch.manual_seed(0)
    frames = np.zeros((6, 40, 50, 3), np.uint8)
    frames[:, :, :25] = 200  # left half bright in every frame
    config = ClipTransformConfig(train_short_side=(40, 48), crop=32, test_short_side=40, test_crop=40)
    transform = TrainTransform(config)
    flips = set()
    for _ in range(20):
        out = transform(frames)
        assert out.shape == (3, 6, 32, 32)
        assert torch.equal(out, out[:, :1].expand_as(out))  # the same crop and flip on every frame
        flips.add(bool(out[0, 0, :, 0].mean() < out[0, 0, :, -1].mean()))
    assert flips == {True, False}


def test_boxes_and_config_geometry():
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        top, left, h, w = random_box(240, 320, (256, 320), 224, gen)
        assert h == w and 168 <= h <= 210 and 0 <= top <= 240 - h and 0 <= left <= 320 - w
    assert view_boxes(256, 340, 256, 256, 3) == [(0, 0, 256, 256), (0, 42, 256, 256), (0, 84, 256, 256)]
    assert view_boxes(256, 340, 256, 224, 1) == [(16, 58, 224, 224)]
    c = ClipTransformConfig.scaled(32)
    assert (c.train_short_side, c.crop, c.test_short_side, c.test_crop) == ((37, 46), 32, 37, 37)
    with pytest.raises(ValueError, match="train_short_side"):
        ClipTransformConfig(train_short_side=(200, 320))
    with pytest.raises(ValueError, match="num_frames=0"):
        ClipSampling(num_frames=0)


# ---------------------------------------------------------------------------------------------------
# DataModules, export round trip


@pytest.mark.parametrize("workers", [0, 2])
def test_synthetic_datamodule_batches(workers):
    dm = SyntheticDataModule(SMALL, LoaderConfig(batch_size=4, num_workers=workers))
    assert dm.num_classes == 2 and dm.class_names == CLASS_NAMES
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 8, 32, 32) and y.shape == (4,)
    labels = torch.cat([b[1] for b in dm.val_dataloader()])
    assert labels.tolist() == [0, 1] * 8
    x, y, video = next(iter(dm.test_dataloader()))
    assert video.tolist() == [0, 1, 2, 3] and y.tolist() == [0, 1, 0, 1]
    # the family of every test video, by video index (what a run's per_family is computed from)
    families = dm.test_families()
    assert families.tolist() == [generate(SMALL, "test", i).family for i in range(16)]
    assert families.tolist() == [f for f in FAMILIES for _ in range(2)] * 2


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export") / "synthetic"
    config = SyntheticConfig(frames=8, size=32, split_sizes=(16, 8, 8))
    summary = export_synthetic(root, config)
    assert summary["videos"] == {"train": 16, "val": 8, "test": 8} and summary["classes"] == 2
    return root, config


@pytest.mark.parametrize("workers", [0, 2])
def test_export_scan_and_decode_round_trip(exported, workers):
    root, config = exported
    report = scan_root(root)
    assert report.class_names == CLASS_NAMES
    assert [(s.split, s.videos, s.classes, s.unreadable) for s in report.splits] == [
        (split, config.split_size(split), 2, []) for split in ("train", "val", "test")
    ]
    # families.csv: every video once, with its clip's family (the class folders do not say it) and its quadruple
    # where the split has them
    rows = [line.split(",") for line in (root / "families.csv").read_text().splitlines()]
    assert rows[0] == ["path", "family", "group"]
    videos = sorted(p.relative_to(root).as_posix() for p in root.glob("*/*/*.mp4"))
    assert sorted(path for path, _, _ in rows[1:]) == videos and len(videos) == 32
    for path, family, group in rows[1:]:
        split, index = Path(path).stem.split("_")
        assert family == generate(config, split, int(index)).family, path
        groups = config.groups_of(split)
        assert group == ("" if groups is None else str(groups[int(index)])), path
    assert report.splits[0].width == (32, 32) and report.splits[0].duration_s == (1.0, 1.0)
    dm = VideoDataModule(root, ClipSampling(8, 1, 1), ClipTransformConfig.scaled(32, jitter=False, num_crops=1),
                         LoaderConfig(batch_size=5, num_workers=workers))
    assert dm.class_names == SyntheticDataModule(config).class_names and dm.test_split == "test"
    clips, labels, videos = next(iter(dm.test_dataloader()))
    memory = SyntheticClips(config, "test")
    for clip, label, video in zip(clips, labels, videos):
        path = dm.indexes["test"].records[int(video)].path
        index = int(path.stem.split("_")[1])
        assert path.parent.name == CLASS_NAMES[int(label)] == CLASS_NAMES[memory.clip(index).label]
        # H.264 at crf 12 in yuv420p: close to the generated clip (noise std 4 included).
        assert (clip - memory[index][0]).abs().mean() * 0.225 * 255 < 12
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (5, 3, 8, 32, 32) and dm.unreadable == {"test": (), "train": ()}


# ---------------------------------------------------------------------------------------------------
# Bad input: one line naming the file and row, exit 2


def _manifest(root: Path, split: str, rows: list[str]) -> None:
    (root / f"{split}.csv").write_text("path,label\n" + "".join(f"{r}\n" for r in rows))


def _cli_error(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("nlbench: error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_cli_missing_root(tmp_path, capsys):
    assert "does not exist" in _cli_error(["data", "scan", str(tmp_path / "nowhere")], capsys)


def test_cli_empty_split(tmp_path, capsys):
    (tmp_path / "train" / "a").mkdir(parents=True)
    err = _cli_error(["data", "scan", str(tmp_path)], capsys)
    assert "split 'train' is empty" in err and str(tmp_path / "train") in err


def test_cli_manifest_row_with_unknown_path(tmp_path, capsys):
    write_video(tmp_path / "v" / "ok.mp4", numbered(8), 8)
    _manifest(tmp_path, "train", ["v/ok.mp4,a", "v/missing.mp4,a"])
    err = _cli_error(["data", "scan", str(tmp_path)], capsys)
    assert f"{tmp_path / 'train.csv'} line 3" in err and "'v/missing.mp4' does not exist" in err


def test_cli_label_absent_from_class_list(tmp_path, capsys):
    write_video(tmp_path / "v" / "ok.mp4", numbered(8), 8)
    (tmp_path / "classes.txt").write_text("a\nb\n")
    _manifest(tmp_path, "train", ["v/ok.mp4,a"])
    _manifest(tmp_path, "val", ["v/ok.mp4,b", "v/ok.mp4,zebra"])
    err = _cli_error(["data", "scan", str(tmp_path)], capsys)
    assert f"{tmp_path / 'val.csv'} line 3" in err and "'zebra' is not in the class list" in err
    # The same mistake in the folder layout names the class folder.
    _tree(tmp_path / "f", {"train/a/x.mp4": numbered(8), "val/zebra/y.mp4": numbered(8)})
    err = _cli_error(["data", "scan", str(tmp_path / "f")], capsys)
    assert str(tmp_path / "f" / "val" / "zebra") in err


def test_cli_manifest_without_the_columns(tmp_path, capsys):
    (tmp_path / "train.csv").write_text("file,class\nx.mp4,a\n")
    assert "missing label, path" in _cli_error(["data", "scan", str(tmp_path)], capsys)


_EXPORT_ONE_CPU = """
import os, sys
from nlbench.data import SyntheticConfig, export_synthetic
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
export_synthetic(sys.argv[1], SyntheticConfig(frames=8, size=128, split_sizes=(8, 8, 8)))
"""


@pytest.mark.skipif(len(getattr(os, "sched_getaffinity", lambda _: ())(0)) < 2, reason="needs 2 CPUs")
def test_export_is_byte_identical_run_to_run_and_whatever_cpus_it_sees(tmp_path):
    config = SyntheticConfig(frames=8, size=128, split_sizes=(8, 8, 8))
    export_synthetic(tmp_path / "a", config)
    export_synthetic(tmp_path / "b", config, workers=2)
    subprocess.run([sys.executable, "-c", _EXPORT_ONE_CPU, str(tmp_path / "c")], check=True,
                   cwd=Path(__file__).resolve().parents[1])

    def files(root: Path) -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    a = files(tmp_path / "a")
    assert len([k for k in a if k.endswith(".mp4")]) == 24
    for other in ("b", "c"):
        b = files(tmp_path / other)
        assert a.keys() == b.keys() and [k for k in a if a[k] != b[k]] == [], other


def test_cli_export_refuses_bad_sizes_and_a_used_directory(tmp_path, capsys):
    assert "split_sizes=(25, 10, 10)" in _cli_error(
        ["data", "export-synthetic", str(tmp_path / "a"), "--split-sizes", "25,10,10"], capsys
    )
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "old.txt").write_text("x")
    assert "is not empty" in _cli_error(["data", "export-synthetic", str(tmp_path / "b")], capsys)
    with pytest.raises(SystemExit):
        main(["data", "export-synthetic", str(tmp_path / "c"), "--split-sizes", "10,10"])


def test_cli_export_then_scan_json(tmp_path, capsys):
    import json

    assert main(["data", "export-synthetic", str(tmp_path / "s"), "--split-sizes", "16,8,8", "--json"]) == 0
    capsys.readouterr()
    assert main(["data", "scan", str(tmp_path / "s"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [s["videos"] for s in report["splits"]] == [16, 8, 8]
    assert report["splits"][0]["codecs"] == {"h264/mov": 16}
    assert main(["data", "scan", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert all(split in out for split in ("train", "val", "test")) and "h264/mov 16" in out


@pytest.mark.filterwarnings("ignore:.*treespec:")  # Lightning's own use of a torch deprecation
@pytest.mark.parametrize("source", ["synthetic", "video"])
def test_lightning_loops_see_each_split_as_the_datamodule_promises(exported, source):
    """One epoch of a real Trainer on each source: training batches are full (the partial last batch is
    dropped: a batch of one clip breaks BatchNorm), validation sees every val clip once, in order, with its
    label, and the test loop sees every view of every test video, each with the video's index and label."""
    import pytorch_lightning as pl

    root, _ = exported
    loader = LoaderConfig(batch_size=5, num_workers=0)
    if source == "synthetic":
        dm = SyntheticDataModule(SMALL, loader)
        views = 1
        label_of = {split: SMALL.label for split in ("train", "val", "test")}  # the generator's own labels
    else:
        dm = VideoDataModule(root, ClipSampling(8, 1, num_clips=2),
                             ClipTransformConfig.scaled(32, jitter=False, num_crops=3), loader)
        views = 2 * 3

        def from_folder(split):  # the label a video's class folder gives, not the one the index stored
            return lambda video: dm.class_names.index(dm.datasets[split].records[video].path.parent.name)

        label_of = {split: from_folder(split) for split in ("val", "test")}

    class Probe(pl.LightningModule):
        def __init__(self, num_classes):
            super().__init__()
            self.fc = torch.nn.Linear(3, num_classes)
            self.train_batches, self.val_labels, self.test_items = [], [], []

        def forward(self, x):
            return self.fc(x.mean((2, 3, 4)))

        def training_step(self, batch, _):
            x, y = batch
            self.train_batches.append(len(y))
            return torch.nn.functional.cross_entropy(self(x), y)

        def validation_step(self, batch, _):
            self.val_labels += batch[1].tolist()

        def test_step(self, batch, _):
            _, y, video = batch
            self.test_items += zip(video.tolist(), y.tolist())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    model = Probe(dm.num_classes)
    trainer = pl.Trainer(max_epochs=1, num_sanity_val_steps=0, accelerator="cpu", logger=False,
                         enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(model, datamodule=dm)
    trainer.test(model, datamodule=dm, verbose=False)

    sizes = {split: len(dm.datasets[split]) for split in ("train", "val", "test")}
    assert model.train_batches == [5] * (sizes["train"] // 5) and sizes["train"] % 5  # a partial batch was left
    assert model.val_labels == [label_of["val"](i) for i in range(sizes["val"])]
    videos = sizes["test"] // views
    assert sorted(model.test_items) == sorted((v, label_of["test"](v)) for v in range(videos) for _ in range(views))


def test_cached_synthetic_split_matches_generated(tmp_path):
    from nlbench.data import SyntheticClips, SyntheticConfig

    cfg = SyntheticConfig(frames=4, size=24, split_sizes=(24, 16, 16), seed=3)
    plain = SyntheticClips(cfg, "val", return_index=True)
    cached = SyntheticClips(cfg, "val", return_index=True, cache_dir=tmp_path)
    again = SyntheticClips(cfg, "val", return_index=True, cache_dir=tmp_path)  # reads the file
    assert len(list(tmp_path.glob("*.npy"))) == 1
    for i in (0, 7, 15):
        (a, la, ia), (b, lb, ib), (c, lc, ic) = plain[i], cached[i], again[i]
        assert torch.equal(a, b) and torch.equal(a, c) and la == lb == lc and ia == ib == ic == i
    with pytest.raises(IndexError):
        cached[16]
    other = SyntheticClips(SyntheticConfig(frames=4, size=24, split_sizes=(24, 16, 16), seed=4), "val", cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npy"))) == 2 and not torch.equal(other[0][0], plain[0][0])


def test_a_split_converted_once_gives_the_same_batches(tmp_path, monkeypatch):
    from nlbench.data import SyntheticClips, SyntheticConfig

    cfg = SyntheticConfig(frames=4, size=24, split_sizes=(24, 16, 16), seed=3)
    each = SyntheticClips(cfg, "val", cache_dir=tmp_path)
    once = SyntheticClips(cfg, "val", cache_dir=tmp_path, convert_once=True)
    converted = []
    original = SyntheticClips._convert
    monkeypatch.setattr(SyntheticClips, "_convert", lambda self, i: converted.append(len(i)) or original(self, i))
    for order in ([0, 1, 2, 3], [4, 5, 6, 7], [13, 0, 9], [15]):  # batches in order, and any order
        for (a, la), (b, lb) in zip(each.__getitems__(order), once.__getitems__(order)):
            assert torch.equal(a, b) and a.stride() == b.stride() and la == lb
    assert converted == [4, 16, 4, 3, 1]  # the plain split every batch; the kept one once, whole


def test_cached_batch_read_equals_clip_by_clip(tmp_path):
    from nlbench.data import SyntheticClips, SyntheticConfig

    cfg = SyntheticConfig(frames=4, size=24, split_sizes=(24, 16, 16), seed=3)
    for return_index in (False, True):
        ds = SyntheticClips(cfg, "train", return_index=return_index, cache_dir=tmp_path)
        generated = SyntheticClips(cfg, "train", return_index=return_index)  # no cache: clip by clip
        order = [13, 0, 19, 5, 5]
        batch = ds.__getitems__(order)
        assert len(batch) == len(order)
        for i, got in zip(order, batch):
            want = generated[i]
            assert torch.equal(got[0], want[0]) and got[0].stride(0) == 1 and got[1:] == want[1:]  # channels innermost
    with pytest.raises(IndexError):
        ds.__getitems__([3, 24])
    # through a DataLoader (which calls __getitems__), the batches are the clip-by-clip ones
    loader = torch.utils.data.DataLoader(ds, batch_size=4)
    first = next(iter(loader))
    assert torch.equal(first[0], torch.stack([generated[i][0] for i in range(4)]))
    # collate_clips keeps them channels-last, the models' input layout (no transposing copy either way)
    batch = collate_clips(ds.__getitems__([0, 1, 2, 3]))
    assert torch.equal(batch[0], first[0]) and batch[0].is_contiguous(memory_format=torch.channels_last_3d)
    assert batch[1].tolist() == [generated[i][1] for i in range(4)]


def test_cli_scan_lists_every_unreadable_path_whole_at_any_width(tmp_path, capsys, monkeypatch):
    _tree(tmp_path, {"train/a/ok.mp4": numbered(8), "val/a/ok.mp4": numbered(8)})
    long_name = "broken_" + "x" * 120 + ".mp4"  # longer than any terminal line
    for rel in (f"train/abseiling/{long_name}", "val/a/also broken.mp4"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("not a video")
    monkeypatch.setenv("COLUMNS", "40")
    for workers in ("1", "2"):  # threads, processes
        assert main(["data", "scan", str(tmp_path), "--workers", workers]) == 0
        out = capsys.readouterr().out
        assert f"  train  train/abseiling/{long_name}  (cannot open" in out
        assert "  val  val/a/also broken.mp4  (cannot open" in out
    with pytest.raises(SystemExit, match="2"):
        main(["data", "scan", str(tmp_path), "--workers", "0"])
    assert "--workers: '0' is not a positive int" in capsys.readouterr().err
