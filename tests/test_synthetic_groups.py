"""Design 3 of the synthetic benchmark: val and test quadruples that no additive model gets right together."""
import numpy as np
import pytest
import torch

from nlbench.data.synthetic import GROUP, SyntheticConfig, generate
from nlbench.models import build_model
from nlbench.training.run import _group_accuracy

CONFIG = SyntheticConfig(frames=16, size=64, split_sizes=(32, 32, 32), design=3)


def _quadruple(split: str, family: str) -> list:
    start = next(i for i in range(0, CONFIG.split_size(split), GROUP) if CONFIG.family(i, split) == family)
    return [generate(CONFIG, split, start + m) for m in range(GROUP)]


def test_a_quadruple_differs_only_in_the_cue_colours():
    for family in CONFIG.families:
        clips = _quadruple("test", family)
        assert [c.label for c in clips] == [0, 1, 0, 1] and {c.family for c in clips} == {family}
        assert len({tuple(s.tops for s in c.sprites) for c in clips}) == 1  # one layout and timing
        colours = [tuple(s.colour for s in c.sprites) for c in clips]
        c, d = colours[0][0], colours[2][0]
        assert c != d and colours == [(c, c), (c, d), (d, d), (d, c)]
        cue = np.zeros(clips[0].frames.shape[:3], bool)
        for s in clips[0].sprites:
            for t, top in enumerate(s.tops):
                if top is not None:
                    cue[t, top[0]:top[0] + CONFIG.sprite_size, top[1]:top[1] + CONFIG.sprite_size] = True
        for other in clips[1:]:  # the same noise everywhere off the cues
            assert np.array_equal(other.frames[~cue], clips[0].frames[~cue])


def test_training_clips_are_those_of_design_2():
    two = SyntheticConfig(frames=16, size=64, split_sizes=(32, 32, 32), design=2)
    for i in range(8):
        assert np.array_equal(generate(two, "train", i).frames, generate(CONFIG, "train", i).frames)


def _logits(model, clips) -> torch.Tensor:
    x = torch.stack([torch.from_numpy(c.frames).float().div(255).permute(3, 0, 1, 2) for c in clips])
    with torch.no_grad():
        return model(x).double()


@pytest.mark.parametrize("family", ["time", "spacetime"])
def test_a_c2d_scores_a_temporal_quadruple_additively_whatever_its_weights(family):
    """Same-colour clips' logits sum to the different-colour clips' sum: a C2D gets no quadruple right."""
    clips = _quadruple("test", family)
    for seed in range(3):
        torch.manual_seed(seed)
        model = build_model(50, "c2d", width="small", num_classes=2, dropout=0.0).eval()
        for m in model.modules():  # random BN statistics and affines, far from the identity init
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.normal_(0, 0.5), m.running_var.uniform_(0.5, 2), m.weight.data.normal_(1, 0.5)
        logits = _logits(model, clips)
        same, different = logits[0] + logits[2], logits[1] + logits[3]
        assert torch.allclose(same, different, rtol=0, atol=1e-4 * logits.abs().max()), (same, different)
        out = _group_accuracy(logits.float(), torch.tensor([0, 1, 0, 1]), np.zeros(4), np.array([family] * 4))
        assert out["group_top1"] == 0.0


def test_a_non_local_c2d_is_not_additive_over_the_halves():
    clips = _quadruple("test", "time")
    torch.manual_seed(0)
    model = build_model(50, "c2d", width="small", num_classes=2, dropout=0.0, nl_blocks=5).eval()
    for m in model.modules():  # W_z's BN starts at 0 (the block is the identity): open it
        if isinstance(m, torch.nn.BatchNorm3d) and not m.weight.detach().any():
            m.weight.data.fill_(1.0)
    logits = _logits(model, clips)
    assert not torch.allclose(logits[0] + logits[2], logits[1] + logits[3], rtol=0, atol=1e-3 * logits.abs().max())


def test_group_accuracy_needs_every_clip_of_a_group():
    scores = torch.tensor([[1.0, 0], [0, 1], [1, 0], [1, 0], [1, 0], [0, 1], [1, 0], [0, 1]])
    out = _group_accuracy(scores, torch.tensor([0, 1, 0, 1] * 2), np.repeat([7, 3], 4), np.repeat(["time", "local"], 4))
    assert out == {"group_top1": 50.0, "per_family_group": {"time": 0.0, "local": 100.0}}


def test_split_sizes_must_hold_whole_quadruples_of_every_family():
    with pytest.raises(ValueError, match="multiples of 8, 16 and 16"):
        SyntheticConfig(split_sizes=(32, 24, 32), design=3)
    SyntheticConfig(split_sizes=(8, 24, 8))


def test_an_export_names_each_video_s_quadruple(tmp_path):
    from nlbench.data.export import export_synthetic

    config = SyntheticConfig(frames=4, size=24, split_sizes=(8, 16, 16), design=3)
    export_synthetic(tmp_path / "x", config)
    rows = [line.split(",") for line in (tmp_path / "x" / "families.csv").read_text().splitlines()[1:]]
    for path, family, group in rows:
        split, index = path.split("/")[0], int(path.rsplit("_", 1)[1].split(".")[0])
        assert family == config.family(index, split)
        assert group == ("" if split == "train" else str(index // GROUP))
    assert {g for _, _, g in rows} == {"", "0", "1", "2", "3"}


def test_the_validation_curve_scores_groups_all_right():
    from types import SimpleNamespace

    from nlbench.training.callbacks import ValidationCurve

    trainer = SimpleNamespace(num_training_batches=10, global_step=5, world_size=1)
    # Hits in two batches, as the loader gives them; the groups are consecutive pairs of clips, so a hit read
    # against the wrong clip's group (off by one) gives 33.3333 and not 66.6667.
    module = SimpleNamespace(val_hits=[torch.tensor([True, True, True]), torch.tensor([True, False, False])])
    curve = ValidationCurve(np.repeat([0, 1, 2], 2))
    curve.add(trainer, 83.3333, module)  # the clip top-1 is passed in; the group score is the callback's
    assert curve.points == [{"step": 5, "epoch": 0.5, "val_top1": 83.3333, "val_group_top1": 66.6667}]
    plain = ValidationCurve(None)  # clips drawn one by one: no group score
    plain.add(trainer, 83.3333, module)
    assert plain.points == [{"step": 5, "epoch": 0.5, "val_top1": 83.3333}]
