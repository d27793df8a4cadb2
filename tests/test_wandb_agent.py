"""The agent contract: ``nlbench agent-run`` launched the way ``wandb agent`` launches a sweep's run.

The launch is wandb's own: ``wandb.wandb_agent.Agent._command_run`` gets a run command as the W&B server
sends it (the args of a run that W&B's grid controller, the ``sweeps`` package, hands out for the exported
sweep), sets ``WANDB_RUN_ID`` / ``WANDB_SWEEP_PARAM_PATH``, writes the parameter file, builds the argv from
the sweep's ``command`` and starts the process. What this cannot show: the server creating the sweep and
handing out runs, the agent's polling and heartbeats, the web UI.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

import sweeps  # W&B's sweep engine (make install puts it in)
from wandb.wandb_agent import Agent  # noqa: E402

from nlbench.cli import main  # noqa: E402
from nlbench.report.wandb_source import offline_runs, record_of  # noqa: E402
from nlbench.sweep.spec import build_sweep  # noqa: E402
from nlbench.sweep.wandb_sweep import sweep_config  # noqa: E402

pytestmark = pytest.mark.integration  # real sweeps: every test here trains or runs the sweep machinery

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "ablations" / "2a_instantiation.yaml"
ROW = "Embedded Gaussian"  # a label with a space: one argv element


@pytest.fixture
def agent_env(tmp_path, monkeypatch):
    """The environment `wandb agent ENTITY/PROJECT/SWEEP_ID` gives its runs, offline, in a temp folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))  # no netrc, no settings of the user's
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SWEEP_ID", "abc123sw")
    monkeypatch.setenv("WANDB_PROJECT", "nlbench")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    # The agent runs `nlbench` from PATH: this interpreter's, importing this checkout.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    # _command_run sets these in os.environ for the child; monkeypatch puts them back afterwards.
    monkeypatch.setenv("WANDB_RUN_ID", "")
    monkeypatch.setenv("WANDB_SWEEP_PARAM_PATH", "")
    return tmp_path


def launch(config: dict, run_args: dict, run_id: str) -> tuple[int, str]:
    """wandb's agent launching one run of the sweep; (exit status, output)."""
    agent = Agent(api=None, queue=None, sweep_id=os.environ["WANDB_SWEEP_ID"])
    agent._sweep_command = list(config["command"])
    agent._command_run({"type": "run", "run_id": run_id, "program": config["program"], "args": run_args})
    proc = agent._run_processes[run_id]
    code = proc.wait(timeout=600)
    return code


def grid_run(config: dict, row: str) -> dict:
    runs = []
    while (run := sweeps.next_run(config, runs, validate=not runs)) is not None:
        if run.config["row"]["value"] == row:
            return run.config
        run.state = sweeps.RunState.finished
        runs.append(run)
    raise AssertionError(f"the grid never hands out {row}")


def test_agent_run_trains_a_smoke_cell_attached_to_the_agents_run_and_reuses_it(agent_env, capfd):
    tmp = agent_env
    sweep = build_sweep(TABLE, "smoke")
    cell = next(c for c in sweep.cells if c.row == ROW)
    config = sweep_config(sweep)
    run_args = grid_run(config, ROW)

    assert launch(config, run_args, "agentrun1") == 0
    captured = capfd.readouterr()
    assert captured.err.splitlines()[0] == f"W&B: offline for run {cell.run_id}: WANDB_MODE=offline", captured.err
    assert f"run {cell.run_id} trained" in captured.out
    run_dir = tmp / "results" / "smoke" / "runs" / cell.run_id
    record = json.loads((run_dir / "record.json").read_text())
    assert record["run_id"] == cell.run_id and record["status"] == "ok" and record["config"] == cell.config.to_dict()
    for key in ("params", "gflops", "latency_ms", "val_top1", "top1", "train_clips_per_s", "peak_mem_mb"):
        assert record[key] is not None, key
    # The parameter file the agent wrote, which wandb.init read as the sweep's config.
    params = yaml.safe_load((tmp / "wandb" / "sweep-abc123sw" / "config-agentrun1.yaml").read_text())
    assert params["row"]["value"] == ROW

    (first,) = offline_runs(run_dir)
    assert first.id == "agentrun1" and first.state == "finished"  # the agent's run id: attached, not a new run
    assert first.group == "smoke/2a_instantiation" and first.tags == ("2a_instantiation", ROW, "seed=0")
    assert {k: first.config[k] for k in ("table", "profile", "row", "seed", "run_id")} == {
        "table": "2a_instantiation", "profile": "smoke", "row": ROW, "seed": 0, "run_id": cell.run_id}
    assert first.config["model"] == cell.config.to_dict()["model"]
    assert first.summary["val_top1"] == record["val_top1"]  # the sweep's metric
    assert record_of(first)["top1"] == record["top1"]

    # The same cell handed out again (another sweep, a rerun): a new W&B run gets the record, nothing trains.
    assert launch(config, run_args, "agentrun2") == 0
    out = capfd.readouterr().out
    assert "reused" in out and "trained" not in out
    assert json.loads((run_dir / "record.json").read_text()) == record
    second = next(r for r in offline_runs(run_dir) if r.id == "agentrun2")
    assert second.summary["val_top1"] == record["val_top1"] and second.summary["reused"] is True
    assert second.state == "finished"


def test_agent_run_exits_non_zero_when_the_run_fails(agent_env, monkeypatch, capsys):
    tmp = agent_env
    monkeypatch.setenv("WANDB_MODE", "disabled")  # in-process, no W&B: the exit status is what is tested here
    table = tmp / "nan.yaml"  # a row whose loss diverges at once
    table.write_text(yaml.safe_dump({
        "table": "nan", "title": "diverges", "baseline": "big lr",
        "rows": [{"row": "big lr", "model": {"nl_blocks": 0}, "recipe": {"lr": 1e30}, "paper": None}]}))
    (tmp / "profiles.yaml").write_text(yaml.safe_dump({"smoke": {
        "config": str(ROOT / "configs" / "smoke.yaml"), "seeds": [0], "clips": {"default": {}}}}))
    sweep = build_sweep(table, "smoke")
    assert main(["agent-run", f"--table={table}", "--profile=smoke", "--row=big lr", "--seed=0"]) == 1
    assert "failed" in capsys.readouterr().err
    record = json.loads((tmp / "results" / "smoke" / "runs" / sweep.cells[0].run_id / "record.json").read_text())
    assert record["status"] == "failed" and "loss is" in record["reason"]


@pytest.mark.parametrize("argv, expected", [
    (["--table=2z_nothing", "--profile=smoke", "--row=C2D", "--seed=0"], "--table 2z_nothing: unknown table"),
    (["--table=2a_instantiation", "--profile=huge", "--row=C2D", "--seed=0"], "unknown profile 'huge'"),
    (["--table=2a_instantiation", "--profile=smoke", "--row=C3D", "--seed=0"], "--row 'C3D': not a row of"),
    (["--table=2a_instantiation", "--profile=smoke", "--row=C2D", "--seed=7"], "--seed '7': not a seed of profile"),
    (["--table=2a_instantiation", "--profile=smoke", "--row=C2D", "--seed=x"], "--seed 'x': not a seed of profile"),
])
def test_agent_run_rejects_bad_input_in_one_line_before_training_or_wandb(argv, expected, agent_env, monkeypatch,
                                                                         capsys):
    import wandb

    import nlbench.sweep.agent as agent

    def forbidden(*a, **k):
        raise AssertionError("called before the input was checked")

    monkeypatch.setattr(wandb, "init", forbidden)
    monkeypatch.setattr(agent, "train_run", forbidden)
    assert main(["agent-run", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nlbench: error: ") and expected in err and "\n" not in err, err
    assert not (agent_env / "results").exists() and not (agent_env / "wandb").exists()
