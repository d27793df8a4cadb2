"""The W&B sweep of every table: valid for W&B's own sweep engine, and its grid is exactly the optuna sweep's cells.

``sweeps`` (PyPI) is W&B's sweep controller: ``SweepConfig`` validates a config against W&B's schema and
``next_run`` hands out what a grid sweep would. The agent's argv is built with wandb's own code
(``create_sweep_command_args``) and parsed by nlbench's CLI, which must land on the same cell (same run_id).
What these tests cannot show: the server creating the sweep, agents polling it, the web UI.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import sweeps  # W&B's sweep engine (make install puts it in)
from wandb.sdk.launch.sweeps.utils import create_sweep_command_args  # noqa: E402

from nlbench.cli import build_parser, main  # noqa: E402
from nlbench.sweep.agent import find_cell, table_path  # noqa: E402
from nlbench.sweep.spec import build_sweep, table_files  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ABLATIONS = ROOT / "ablations"
TABLES = table_files(ABLATIONS)


def grid(config: dict) -> list:
    """Every run W&B's grid controller hands out, each reported finished before the next is asked for."""
    runs = []
    while (run := sweeps.next_run(config, runs, validate=not runs)) is not None:
        run.state = sweeps.RunState.finished
        runs.append(run)
        assert len(runs) <= 1000, "the grid does not end"
    return runs


def paper_root(tmp_path: Path) -> Path:
    for split in ("train", "val"):
        (tmp_path / "data" / split / "class_a").mkdir(parents=True)
    return tmp_path / "data"


@pytest.mark.parametrize("profile", ["smoke", "tiny", "paper"])
def test_every_exported_sweep_validates_and_enumerates_exactly_its_cells(profile, tmp_path, capsys):
    data = str(paper_root(tmp_path)) if profile == "paper" else None
    out = tmp_path / "sweeps"
    argv = ["sweep", *map(str, TABLES), str(ABLATIONS / "profiles.yaml"), "--profile", profile,
            "--wandb-sweep", str(out)] + (["--data", data] if data else [])
    assert main(argv) == 0
    assert sorted(p.stem for p in out.glob("*.yaml")) == [t.stem for t in TABLES]
    assert not (tmp_path / "results").exists()  # nothing trained, no study
    parser = build_parser()
    for table in TABLES:
        config = yaml.safe_load((out / f"{table.stem}.yaml").read_text())
        sweeps.SweepConfig(config)  # W&B's schema; raises on a violation
        assert config["method"] == "grid" and config["metric"] == {"name": "val_top1", "goal": "maximize"}
        assert config["command"] == ["nlbench", "agent-run", "${args}"]
        sweep = build_sweep(table, profile, data)
        runs = grid(config)
        handed_out, built = [], {}
        for run in runs:
            args = parser.parse_args(["agent-run", *create_sweep_command_args({"args": run.config})["args"]])
            key = (args.table, args.profile, args.data)
            if key not in built:  # the agent's own lookup of the table; built once per table (it is slow)
                built[key] = build_sweep(table_path(args.table), args.profile, args.data)
            cell = find_cell(built[key], args.row, args.seed)
            handed_out.append((cell.row, cell.seed, cell.run_id))
        expected = [(c.row, c.seed, c.run_id) for c in sweep.cells]
        assert sorted(handed_out) == sorted(expected) and len(set(handed_out)) == len(expected), table.stem


def test_a_row_label_with_spaces_is_one_argv_element():
    config = yaml.safe_load(yaml.safe_dump({"args": {"row": {"value": "Embedded Gaussian"}, "seed": {"value": 0}}}))
    argv = create_sweep_command_args(config)["args"]
    assert argv == ["--row=Embedded Gaussian", "--seed=0"]
    args = build_parser().parse_args(["agent-run", "--table=2a_instantiation", "--profile=smoke", *argv])
    assert (args.row, args.seed) == ("Embedded Gaussian", "0")


def test_export_checks_every_table_before_writing(tmp_path, capsys):
    out = tmp_path / "sweeps"
    assert main(["sweep", str(TABLES[0]), str(tmp_path / "nope.yaml"), "--profile", "smoke",
                 "--wandb-sweep", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "nope.yaml" in err and "\n" not in err
    assert not out.exists()
    assert main(["sweep", str(TABLES[0]), "--profile", "huge", "--wandb-sweep", str(out)]) == 2
    assert "unknown profile 'huge'" in capsys.readouterr().err
