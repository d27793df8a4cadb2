"""The paper's pretrained-backbone protocol: the synthetic families a run's splits draw from (``data.families``)
and ``model.init_from: run:<run_id>``."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nlbench.data.synthetic import FAMILIES
from nlbench.training import ConfigError, RunConfig

REPO = Path(__file__).resolve().parents[1]
# The smallest run through every step of train_run (as tests/test_sweep.py's)
FAST = {
    "model": {"width": "small", "dropout": 0.0},
    "data": {"frames": 16, "size": 32, "split_sizes": [16, 8, 8], "batch_size": 8, "eval_batch_size": 8,
             "cache_dir": "results/.cache/synthetic"},
    "recipe": {"optimizer": "sgd", "lr": 0.01, "schedule": "constant", "max_steps": 2},
    "trainer": {"accelerator": "cpu", "threads": 1, "memory_format": "channels_last"},
    "measure": {"enabled": False},
    "wandb": {"enabled": False},
}


def _one_line_error(data: dict) -> str:
    with pytest.raises(ConfigError) as e:
        RunConfig.from_dict(data, "my.yaml")
    message = str(e.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------------------------------ data.families


def test_data_families_choose_the_synthetic_families():
    assert RunConfig().data.synthetic().families == FAMILIES
    config = RunConfig.from_dict({"data": {"families": ["local"], "split_sizes": [16, 8, 8]}})
    assert config.data.synthetic().families == ("local",)
    assert config.run_id != RunConfig.from_dict({"data": {"split_sizes": [16, 8, 8]}}).run_id
    # all four, spelled out, is the default: the same run
    assert RunConfig.from_dict({"data": {"families": list(FAMILIES)}}).run_id == RunConfig().run_id


@pytest.mark.parametrize("families", [["local", "nope"], [], ["local", "local"], "local"])
def test_bad_data_families_are_one_line_naming_the_key_and_value(families):
    message = _one_line_error({"data": {"families": families}})
    assert message.startswith("my.yaml: data.families=") and repr(families) in message


# ------------------------------------------------------------------------------------------ run:<run_id>


def _finished_run(runs_dir: Path, config: RunConfig, status: str = "ok") -> Path:
    """A run folder as train_run leaves it: the model's weights and the record naming its run id."""
    from nlbench.training.run import build_model

    run_dir = runs_dir / config.run_id
    run_dir.mkdir(parents=True)
    torch.save(build_model(config, 8).state_dict(), run_dir / "model.pt")
    (run_dir / "record.json").write_text(json.dumps({"run_id": config.run_id, "status": status}))
    return run_dir


def test_init_from_a_run_of_the_same_runs_folder(tmp_path):
    from nlbench.training.run import build_model

    backbone = RunConfig.from_dict({**FAST, "seed": 7})
    run_dir = _finished_run(tmp_path / "runs", backbone)
    weights = torch.load(run_dir / "model.pt", weights_only=True)
    fine = RunConfig.from_dict({**FAST, "model": {**FAST["model"], "nl_blocks": 1,
                                                  "init_from": f"run:{backbone.run_id}"}})
    model = build_model(fine, 8, tmp_path / "runs")
    state = model.state_dict()
    assert torch.equal(state["conv1.weight"], weights["conv1.weight"])
    scratch = build_model(fine.replace(model={"init_from": None}), 8)
    assert not torch.equal(scratch.state_dict()["conv1.weight"], weights["conv1.weight"])
    # the id, not a folder, is the fine-tuned run's identity: the same on every machine
    assert fine.result_dict()["model"]["init_from"] == f"run:{backbone.run_id}"


def test_init_from_a_run_that_is_missing_or_failed_is_one_line(tmp_path):
    from nlbench.training.run import build_model

    missing = RunConfig.from_dict({**FAST, "model": {**FAST["model"], "init_from": "run:0123456789abcdef"}})
    for runs_dir, said in ((tmp_path, "is not finished"), (None, "needs the runs folder")):
        with pytest.raises(ConfigError) as e:
            build_model(missing, 8, runs_dir)
        assert str(e.value).startswith("model.init_from='run:0123456789abcdef': ") and said in str(e.value)
        assert "\n" not in str(e.value)
    failed = RunConfig.from_dict({**FAST, "seed": 3})
    _finished_run(tmp_path, failed, status="failed")
    with pytest.raises(ConfigError, match="ended 'failed', not ok"):
        build_model(missing.replace(model={"init_from": f"run:{failed.run_id}"}), 8, tmp_path)


def test_init_from_run_needs_a_run_id():
    message = _one_line_error({"model": {"init_from": "run:../elsewhere"}})
    assert "model.init_from='run:../elsewhere' is not allowed" in message
