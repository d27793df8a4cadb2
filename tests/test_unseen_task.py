"""benchmarks/unseen_task.py: the two-flashes mp4 task that checks the tiny recipe off the embedded benchmark."""
import numpy as np
import pytest

from benchmarks.unseen_task import CLASSES, clip, quadrant, write


def _flash_quadrants(video: np.ndarray) -> list[int]:
    t = len(video)
    out = []
    for part in (video[: t // 4], video[t - t // 4:]):
        ys, xs = np.nonzero((part.min(axis=3) >= 200).any(axis=0))
        assert len(ys), "no flash"
        out.append(quadrant(int(ys.mean()), int(xs.mean()), video.shape[1]))
    return out


@pytest.mark.parametrize("label", [0, 1])
def test_the_label_says_whether_the_two_flashes_share_a_quadrant(label):
    rng = np.random.default_rng(3)
    for _ in range(20):
        first, second = _flash_quadrants(clip(rng, label, 16, 32))
        assert (first == second) == (CLASSES[label] == "same")


def test_the_middle_of_a_clip_holds_no_flash():
    # The cues sit in the first and last quarter: a C2D's two res3 slots (the halves) never see both.
    video = clip(np.random.default_rng(0), 0, 16, 32)
    assert (video[4:12].min(axis=3) < 200).all()


def test_it_writes_the_kinetics_layout(tmp_path):
    import av

    write(tmp_path / "t", {"train": 4, "val": 2}, 16, 32, 7)
    assert (tmp_path / "t" / "classes.txt").read_text().split() == list(CLASSES)
    files = sorted((tmp_path / "t").rglob("*.mp4"))
    assert len(files) == 6 and {f.parent.name for f in files} == set(CLASSES)
    with av.open(str(files[0])) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 16 and frames[0].shape == (32, 32, 3)
