"""The paper's pretrained-backbone protocol as a profile option (ablations/profiles.yaml ``pretrain:``): the
synthetic families a run's splits draw from (``data.families``), ``model.init_from: run:<run_id>``, and a sweep
that trains each (depth, seed)'s backbone once, before the cells fine-tuned from it."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from nlbench.data.synthetic import FAMILIES
from nlbench.sweep import runner, runs
from nlbench.sweep.spec import build_sweep, load_profiles
from nlbench.training import ConfigError, RunConfig, train_run

from tests.test_sweep import FAST  # the smallest run through every step of train_run

REPO = Path(__file__).resolve().parents[1]
PRETRAIN = {"data": {"families": ["local"], "frames": 8}}


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


# ----------------------------------------------------------------------------------------- the profile


def _profiles(folder: Path, pretrain, seeds=(0, 1)) -> Path:
    (folder / "fast.yaml").write_text(yaml.safe_dump(FAST))
    profile = {"config": str(folder / "fast.yaml"), "seeds": list(seeds)}
    if pretrain is not None:
        profile["pretrain"] = pretrain
    (folder / "profiles.yaml").write_text(yaml.safe_dump({"test": profile}))
    return folder / "profiles.yaml"


@pytest.mark.parametrize("pretrain, said", [
    ({"epochs": 3}, "pretrain: unknown key 'epochs'"),
    ({"config": "nowhere.yaml"}, "pretrain: config="),
    ({"config": 3}, "pretrain: config=3"),
    ({"data": [1]}, "pretrain: data must be a mapping"),
    ([1], "pretrain must be a mapping"),
])
def test_bad_pretrain_is_one_line_naming_the_file_and_key(tmp_path, pretrain, said):
    path = _profiles(tmp_path, pretrain)
    with pytest.raises(ConfigError) as e:
        load_profiles(path)
    assert str(e.value).startswith(f"{path}: profile test: ") and said in str(e.value), str(e.value)
    assert "\n" not in str(e.value)


def test_a_bad_pretrain_run_config_is_one_line(tmp_path):
    path = _profiles(tmp_path, {"data": {"families": ["nope"]}})
    table = _table(tmp_path)
    with pytest.raises(ConfigError) as e:
        build_sweep(table, "test", profiles_path=path)
    assert str(e.value).startswith(f"{path}: profile test: pretrain: data.families=['nope']"), str(e.value)


def _table(folder: Path, rows=None) -> Path:
    rows = rows or [{"row": "C2D", "model": {"nl_blocks": 0}}, {"row": "NL", "model": {"nl_blocks": 1}}]
    path = folder / "two.yaml"
    path.write_text(yaml.safe_dump({"table": "two", "title": "two", "baseline": "C2D",
                                    "defaults": {"model": {"depth": 50}}, "rows": rows}))
    return path


def test_each_cell_starts_from_its_depth_and_seed_s_backbone(tmp_path):
    path = _profiles(tmp_path, PRETRAIN)
    table = _table(tmp_path, [{"row": "C2D", "model": {"nl_blocks": 0}},
                              {"row": "NL", "model": {"nl_blocks": 1}},
                              {"row": "I3D", "model": {"arch": "i3d_3x1x1", "nl_blocks": 0}},
                              {"row": "R101", "model": {"depth": 101, "nl_blocks": 0}},
                              {"row": "own", "model": {"nl_blocks": 0, "init_from": "weights.pt"}}])
    sweep = build_sweep(table, "test", profiles_path=path)
    backbones = {}
    for cell in sweep.cells:
        if cell.row == "own":  # a row's own init_from is kept
            assert cell.pretrain is None and cell.config.model.init_from == "weights.pt"
            continue
        b = cell.pretrain
        assert cell.config.model.init_from == f"run:{b.run_id}"
        assert (b.seed, b.model.depth, b.model.arch, b.model.nl_blocks, b.model.init_from) == (
            cell.seed, cell.config.model.depth, "c2d", 0, None)
        assert b.data.families == ("local",) and b.data.frames == 8 and b.recipe == cell.config.recipe
        backbones.setdefault((cell.seed, cell.config.model.depth), set()).add(b.run_id)
    assert sorted(backbones) == [(0, 50), (0, 101), (1, 50), (1, 101)]
    assert all(len(ids) == 1 for ids in backbones.values())
    assert len({i for ids in backbones.values() for i in ids}) == 4


def test_the_small_profiles_fine_tune_and_the_paper_profile_does_not():
    """smoke (CI's main job) and tiny (the default) run the paper's protocol from their own backbones; the paper
    profile would start from ImageNet weights (model.init_from a converted checkpoint), not from a backbone of ours."""
    profiles = load_profiles()
    assert profiles["smoke"].pretrain is not None and profiles["tiny"].pretrain is not None
    assert profiles["paper"].pretrain is None
    table = REPO / "ablations" / "2a_instantiation.yaml"
    for profile in ("smoke", "tiny"):
        cells = build_sweep(table, profile).cells
        assert all(c.config.model.init_from == f"run:{c.pretrain.run_id}" for c in cells)
        assert all(c.pretrain.data.families == ("local",) for c in cells)


# ------------------------------------------------------------------------------------------- the sweep


def _trainings(monkeypatch) -> list:
    """The configs the sweep machinery trains (runs.train_run, the real one), in order."""
    calls = []

    def spy(config, run_dir, **kwargs):
        calls.append(config)
        return train_run(config, run_dir, **kwargs)

    monkeypatch.setattr(runs, "train_run", spy)
    return calls


@pytest.mark.integration
def test_a_sweep_trains_each_backbone_once_before_its_cells(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = _profiles(tmp_path, PRETRAIN)
    table = _table(tmp_path)
    calls = _trainings(monkeypatch)
    frame = runner.run_sweep(table, "test", progress=False, profiles_path=path)
    assert list(frame["status"]) == ["ok"] * 4
    sweep = build_sweep(table, "test", profiles_path=path)
    backbones = {c.seed: c.pretrain.run_id for c in sweep.cells}
    assert len(set(backbones.values())) == 2
    trained = [c.run_id for c in calls]
    assert sorted(trained) == sorted([*backbones.values(), *(c.run_id for c in sweep.cells)])  # each once
    for cell in sweep.cells:
        assert trained.index(backbones[cell.seed]) < trained.index(cell.run_id)  # the backbone first
    folder = tmp_path / "results" / "test" / "runs"
    for cell in sweep.cells:
        record = json.loads((folder / cell.run_id / "record.json").read_text())
        assert record["config"]["model"]["init_from"] == f"run:{backbones[cell.seed]}"
    for seed, run_id in backbones.items():
        record = json.loads((folder / run_id / "record.json").read_text())
        assert record["status"] == "ok" and record["config"]["data"]["families"] == ["local"]
    csv = pd.read_csv(tmp_path / "results" / "test" / "two.csv")
    assert set(csv["run_id"]) == {c.run_id for c in sweep.cells}  # no row for a backbone

    # A second sweep trains nothing; one that lost a cell (its run interrupted: no record) trains that cell
    # alone from the backbone kept
    runner.run_sweep(table, "test", progress=False, profiles_path=path)
    assert len(calls) == 6
    lost = sweep.cells[0].run_id
    (folder / lost / "record.json").unlink()
    (tmp_path / "results" / "test" / "sweeps.db").unlink()
    runner.run_sweep(table, "test", progress=False, profiles_path=path)
    assert [c.run_id for c in calls[6:]] == [lost]

    # A fresh clone of committed results: records without weights (model.pt is not committed). A cell still to
    # train gets its backbone's weights by training it again, kept because they give the backbone's record.
    clone = sweep.cells[2]
    backbone = folder / backbones[clone.seed]
    before = (backbone / "record.json").read_bytes()
    weights = torch.load(backbone / "model.pt", weights_only=True)
    (backbone / "model.pt").unlink()
    (folder / clone.run_id / "record.json").unlink()
    (tmp_path / "results" / "test" / "sweeps.db").unlink()
    runner.run_sweep(table, "test", progress=False, profiles_path=path)
    assert [c.run_id for c in calls[7:]] == [backbones[clone.seed], clone.run_id]
    assert (backbone / "record.json").read_bytes() == before
    again = torch.load(backbone / "model.pt", weights_only=True)
    assert again.keys() == weights.keys() and all(torch.equal(again[k], weights[k]) for k in weights)
    assert not any((folder / ".weights").iterdir())
    # One that does not give its record again (trained with other kernels, or other code) stops its cells: they
    # would start from other weights than the finished cells did
    (backbone / "model.pt").unlink()
    (folder / clone.run_id / "record.json").unlink()
    (tmp_path / "results" / "test" / "sweeps.db").unlink()
    record = json.loads(before)
    record["top1"] = -1.0
    (backbone / "record.json").write_text(json.dumps(record))
    frame = runner.run_sweep(table, "test", progress=False, profiles_path=path)
    failed = frame[frame["run_id"] == clone.run_id].iloc[0]
    assert failed["status"] == "failed" and "\n" not in failed["reason"]
    assert f"backbone {backbones[clone.seed]}: " in failed["reason"] and "(mismatch: top1: record -1.0" in failed["reason"]
    assert [c.run_id for c in calls[9:]] == [backbones[clone.seed]]  # trained again once, for all its cells
    with pytest.raises(runs.ConfigError, match="gives other figures"):  # the verdict is kept: no training again
        runs.obtain_backbone(build_sweep(table, "test", profiles_path=path).cells[2].pretrain, folder)
    assert len(calls) == 10 and not (backbone / "model.pt").exists()
    (backbone / "record.json").write_bytes(before)  # the record it does reproduce: the kept re-run's weights go in
    (tmp_path / "results" / "test" / "sweeps.db").unlink()
    runner.run_sweep(table, "test", progress=False, profiles_path=path)
    assert [c.run_id for c in calls[10:]] == [clone.run_id]
    assert (backbone / "model.pt").is_file() and not (folder / ".weights" / backbone.name).exists()

    # `nlbench reproduce` of a fine-tuned run starts from the backbone beside it, wherever it re-runs
    from nlbench.cli import main

    assert main(["reproduce", str(folder / sweep.cells[1].run_id), "--out", str(tmp_path / "again")]) == 0
    # Weights are not committed: on a fresh clone the backbone is re-run from its config first, and checked
    (folder / backbones[sweep.cells[1].seed] / "model.pt").unlink()
    assert main(["reproduce", str(folder / sweep.cells[1].run_id), "--out", str(tmp_path / "fresh")]) == 0
    assert (tmp_path / "fresh" / "backbone" / backbones[sweep.cells[1].seed] / "model.pt").is_file()
    assert "backbone " + backbones[sweep.cells[1].seed] + ": reproduced" in capsys.readouterr().out
    # A backbone that does not give its record again fails the reproduction
    record = json.loads((folder / backbones[sweep.cells[1].seed] / "record.json").read_text())
    record["top1"] = -1.0
    (folder / backbones[sweep.cells[1].seed] / "record.json").write_text(json.dumps(record))
    assert main(["reproduce", str(folder / sweep.cells[1].run_id), "--out", str(tmp_path / "fresh2")]) == 1


@pytest.mark.integration
def test_a_wandb_agent_trains_the_cell_s_backbone_first(tmp_path, monkeypatch):
    from nlbench.sweep.agent import agent_run

    monkeypatch.chdir(tmp_path)
    _profiles(tmp_path, PRETRAIN)
    _table(tmp_path)
    record, reused = agent_run("two", "test", "NL", 1, results=tmp_path / "results", ablations=tmp_path)
    assert record["status"] == "ok" and not reused
    backbone = record["config"]["model"]["init_from"].removeprefix("run:")
    assert json.loads((tmp_path / "results" / "test" / "runs" / backbone / "record.json").read_text())["status"] == "ok"


@pytest.mark.integration
def test_a_recipe_search_trains_the_row_s_backbone_once(tmp_path, monkeypatch):
    from nlbench.sweep.search import run_search

    monkeypatch.chdir(tmp_path)
    _profiles(tmp_path, PRETRAIN, seeds=[0])
    table = _table(tmp_path)
    calls = _trainings(monkeypatch)
    frame = run_search(table, "NL", profile="test", method="random", trials=2, progress=False)
    assert set(frame["state"]) <= {"COMPLETE", "PRUNED"}
    backbone = build_sweep(table, "test").cells[0].pretrain.run_id
    assert [c.run_id for c in calls].count(backbone) == 1 and calls[0].run_id == backbone
    assert {c.model.init_from for c in calls[1:]} == {f"run:{backbone}"} and len(calls) == 3
