"""Keys added after run ids existed (nlbench.identity): old runs keep their ids, new values get new ones."""
import pytest

from nlbench.identity import Added, added_of
from nlbench.training.config import _SECTIONS, RunConfig

# Ids of configs as they were written before the keys they omit existed, computed at commit 1ffbcdd (before
# the markers replaced four hand-kept lists): each must stay, or a resumed sweep retrains finished runs.
OLD_IDS = [
    ({"recipe": {"val_points": 0}}, "d51e75349c6a2c60"),
    ({"model": {"nl_blocks": 5, "nl_preset": "paper"}}, "3a0eea8efd154023"),  # W_z_bias as before
    ({"data": {"source": "video", "root": "/data/k400"}}, "dc2a6a190e94b129"),
    ({"model": {"nl_blocks": 1, "block": "global_context"}}, "1f4d5efad097bd0c"),
]


@pytest.mark.parametrize("config, run_id", OLD_IDS)
def test_configs_written_before_a_key_existed_keep_their_ids(config, run_id):
    assert RunConfig.from_dict(config).run_id == run_id


def _added_keys():
    for section in _SECTIONS:
        for name, field in RunConfig.model_fields[section].annotation.model_fields.items():
            marker = added_of(field.metadata)
            if marker is not None and marker.before is not Added().before:
                yield section, name, marker.before


ADDED = list(_added_keys())


def test_every_section_can_declare_added_keys():
    assert {section for section, _, _ in ADDED} >= {"model", "data", "recipe"}


# A value other than the old one for each added key, valid for the key.
OTHER = {"val_points": 3, "W_z_bias": False, "block": "global_context", "block_args": {"ratio": 0.25},
         "block_position": "in_residual", "mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2], "design": 3,
         "families": ["local"]}


@pytest.mark.parametrize("section, key, before", ADDED, ids=[f"{s}.{k}" for s, k, _ in ADDED])
def test_an_added_key_counts_only_away_from_its_old_value(section, key, before):
    # a placed block reads the model's block keys; block_args are another block's
    base = {"model": {"nl_blocks": 1, **({"block": "global_context"} if key == "block_args" else {})},
            "data": {"split_sizes": [10000, 1024, 1024]}}  # whole quadruples (data.design 3)
    old = RunConfig.from_dict(base)
    explicit = RunConfig.from_dict({**base, section: {**base.get(section, {}), key: before}})
    assert key not in explicit.result_dict()[section]
    assert explicit.run_id == old.run_id
    changed = RunConfig.from_dict({**base, section: {**base.get(section, {}), key: OTHER[key]}})
    assert changed.run_id != old.run_id
