"""benchmarks/unseen_task.py: the two-flashes mp4 task that checks the tiny recipe off the embedded benchmark."""
import numpy as np
import pytest

from benchmarks.unseen_task import CLASSES, SHAPES, clip, mask, write


def _flash_shapes(video: np.ndarray) -> list[str]:
    """Each flash's shape, read back from the pixels: a filled square fills its bounding box, a plus does not."""
    t = len(video)
    out = []
    for part in (video[: t // 4], video[t - t // 4:]):
        bright = (part.min(axis=3) >= 200).any(axis=0)
        ys, xs = np.nonzero(bright)
        assert len(ys), "no flash"
        box = bright[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        out.append("square" if box.all() else "plus")
    return out


@pytest.mark.parametrize("label", [0, 1])
def test_the_label_says_whether_the_two_flashes_are_one_shape(label):
    rng = np.random.default_rng(3)
    for _ in range(30):
        video, shapes = clip(rng, label, 16, 32)
        assert _flash_shapes(video) == list(shapes)
        assert (shapes[0] == shapes[1]) == (CLASSES[label] == "same")
        assert set(shapes) <= set(SHAPES)


def test_a_plus_is_not_a_square():
    assert mask("square", 7).all() and not mask("plus", 7).all() and mask("plus", 7)[3].all()


def test_the_middle_of_a_clip_holds_no_flash():
    # The cues sit in the first and last quarter: a C2D's two res3 slots (the halves) never see both.
    video, _ = clip(np.random.default_rng(0), 0, 16, 32)
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
