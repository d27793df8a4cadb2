"""Sweeps: the grid, dedup by run_id, resume after an interruption, failed runs, the ablation files, bad input.

Every run is the real train_run, on a config small enough to train in about a second (2 steps of 8 clips,
no cost measurement, no W&B); ``Spy`` counts the calls (and can press Ctrl-C in the middle of one).
"""
from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import pytorch_lightning as pl
import yaml

from nlbench.cli import main
from nlbench.sweep import runner, runs
from nlbench.sweep.heartbeat import Heartbeat, Timing
from nlbench.sweep.ledger import Ledger, cell_of, default_storage, open_storage
from nlbench.sweep.spec import build_sweep, load_profiles, table_files
from nlbench.training import ConfigError, train_run

pytestmark = pytest.mark.integration  # real sweeps: every test here trains or runs the sweep machinery

REPO = Path(__file__).resolve().parents[1]
ABLATIONS = REPO / "ablations"
TABLES = table_files(ABLATIONS)
# The smallest run that goes through every step of train_run: 2 training steps, validation, test, record.
FAST = {
    "model": {"width": "small", "dropout": 0.0},
    "data": {"frames": 16, "size": 32, "split_sizes": [16, 8, 8], "batch_size": 8, "eval_batch_size": 8,
             "cache_dir": "results/.cache/synthetic"},
    "recipe": {"optimizer": "sgd", "lr": 0.01, "schedule": "constant", "max_steps": 2},
    "trainer": {"accelerator": "cpu", "threads": 1, "memory_format": "channels_last"},
    "measure": {"enabled": False},
    "wandb": {"enabled": False},
}


class _CtrlC(pl.Callback):
    def on_train_batch_end(self, *args) -> None:
        raise KeyboardInterrupt  # what Ctrl-C raises in the middle of a training step


class Spy:
    """The real train_run, counted: (run_id, W&B group, tags) of each call; Ctrl-C during call ``interrupt_at``."""

    def __init__(self, interrupt_at: int | None = None):
        self.calls: list[tuple] = []
        self.interrupt_at = interrupt_at

    def __call__(self, config, run_dir, **kwargs):
        self.calls.append((config.run_id, kwargs.get("wandb_group"), tuple(kwargs.get("wandb_tags", ()))))
        if len(self.calls) == self.interrupt_at:
            kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), _CtrlC()]
        return train_run(config, run_dir, **kwargs)


def _table(folder: Path, name: str, rows: list[dict], baseline: str | None = None, **extra) -> Path:
    path = folder / f"{name}.yaml"
    data = {"table": name, "title": f"test {name}", "baseline": baseline or rows[0]["row"],
            "defaults": {"model": {"depth": 50}}, "rows": rows, **extra}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def tables(tmp_path, monkeypatch):
    """A folder with profiles.yaml (smoke config, 2 seeds) and two tables sharing the C2D and 1-block runs."""
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "abl"
    folder.mkdir()
    (folder / "fast.yaml").write_text(yaml.safe_dump(FAST))
    profiles = {
        "test": {"config": str(folder / "fast.yaml"), "seeds": [0, 1],
                 "clips": {"default": {"data": {"frames": 16}}, "long": {"data": {"frames": 32}}}},
        "paperish": {"config": str(folder / "fast.yaml"), "seeds": [0], "needs_data": True},
    }
    (folder / "profiles.yaml").write_text(yaml.safe_dump(profiles))
    a = _table(folder, "ta", [
        {"row": "C2D", "model": {"nl_blocks": 0}, "paper": {"top1": 71.8, "top5": 89.7}},
        {"row": "NL1", "model": {"nl_blocks": 1, "nl_stage": "res4"}, "paper": None},
        {"row": "NL5", "model": {"nl_blocks": 5}, "paper": None},
    ], claims=[{"text": "NL helps", "kind": "above", "rows": ["NL1", "NL5"], "than": "C2D"}])
    b = _table(folder, "tb", [
        {"row": "base", "model": {"nl_blocks": 0}, "paper": None},
        {"row": "one block", "model": {"nl_blocks": 1, "nl_stage": "res4"}, "paper": None},
        {"row": "long", "model": {"nl_blocks": 0}, "clip": "long", "paper": None},
    ])
    return folder, a, b


def _spy(monkeypatch, **kwargs) -> Spy:
    spy = Spy(**kwargs)
    monkeypatch.setattr(runs, "train_run", spy)
    return spy


def test_grid_covers_rows_times_seeds(tables, monkeypatch):
    folder, a, _ = tables
    sweep = build_sweep(a, "test")
    assert [(c.row, c.seed) for c in sweep.cells] == [(r, s) for r in ("C2D", "NL1", "NL5") for s in (0, 1)]
    assert len({c.run_id for c in sweep.cells}) == 6
    spy = _spy(monkeypatch)
    frame = runner.run_sweep(a, "test", progress=False)
    assert len(spy.calls) == 6
    csv = pd.read_csv("results/test/ta.csv", keep_default_na=False)
    assert list(csv["row"]) == ["C2D", "C2D", "NL1", "NL1", "NL5", "NL5"] and list(csv["seed"]) == [0, 1] * 3
    for column in ("table", "row", "depth", "nl_blocks", "nl_stage", "frames", "seed", "run_id", "params", "gflops",
                   "latency_ms", "train_clips_per_s", "peak_mem_mb", "top1", "top5", "val_top1", "status", "reason",
                   "wall_s", "machine"):
        assert column in csv.columns, column
    assert set(csv["status"]) == {"ok"} and "torch" in csv["machine"][0]
    assert len(frame) == 6
    # W&B: one group per table, tags table/row/seed
    assert {g for _, g, _ in spy.calls} == {"test/ta"}
    assert ("ta", "NL5", "seed=1") in {t for _, _, t in spy.calls}
    # the study holds one completed trial per cell
    study = optuna.load_study(study_name="test/ta", storage="sqlite:///results/test/sweeps.db")
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) == 6
    # a second sweep of the same table trains nothing
    runner.run_sweep(a, "test", progress=False)
    assert len(spy.calls) == 6
    assert len(pd.read_csv("results/test/ta.csv")) == 6


def test_same_run_in_two_tables_is_trained_once(tables, monkeypatch):
    folder, a, b = tables
    spy = _spy(monkeypatch)
    runner.run_sweep(a, "test", progress=False)
    assert len(spy.calls) == 6
    frame = runner.run_sweep(b, "test", progress=False)
    # tb's base and one-block rows are ta's C2D and NL1 runs; only "long" (32 frames) is new
    assert len(spy.calls) == 8
    assert len(frame) == 6 and set(frame["status"]) == {"ok"}
    assert list(frame[frame["row"] == "long"]["frames"]) == [32, 32]
    ta = pd.read_csv("results/test/ta.csv")
    assert set(frame[frame["row"] == "base"]["run_id"]) == set(ta[ta["row"] == "C2D"]["run_id"])


def test_resume_after_interruption(tables, monkeypatch):
    folder, a, _ = tables
    spy = _spy(monkeypatch, interrupt_at=3)
    try:
        with pytest.raises((KeyboardInterrupt, SystemExit)):  # Lightning turns Ctrl-C in fit into exit(1)
            runner.run_sweep(a, "test", progress=False)
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # which Lightning's shutdown set to ignore
    done = pd.read_csv("results/test/ta.csv")
    assert len(done) == 2  # written after each finished run
    interrupted = spy.calls[2][0]
    assert (Path("results/test/runs") / interrupted / "config.yaml").exists()  # the run had started
    assert not (Path("results/test/runs") / interrupted / "record.json").exists()
    last = json.loads(Path("results/test/last_sweep.json").read_text())  # the stopped call is the last one
    assert last["interrupted"] is True and last["trained"] == 2

    spy2 = _spy(monkeypatch)
    frame = runner.run_sweep(a, "test", progress=False)
    redone = [c[0] for c in spy2.calls]
    assert len(redone) == 4 and interrupted in redone  # the interrupted run is redone
    assert not set(done["run_id"]) & set(redone)  # finished ones are not
    csv = pd.read_csv("results/test/ta.csv")
    assert len(csv) == 6 and not csv.duplicated(["row", "seed"]).any() and set(csv["status"]) == {"ok"}
    assert len(frame) == 6
    last = json.loads(Path("results/test/last_sweep.json").read_text())
    assert last["interrupted"] is False and last["trained"] == 4


def _within(seconds: float, fn):
    """fn() in a daemon thread; a test failure (not a hung suite) when it does not return in time."""
    import threading

    out = {}
    thread = threading.Thread(target=lambda: out.update(value=fn()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s (a sweep that waits forever)"
    return out["value"]


def test_a_row_is_written_the_same_whatever_other_rows_hold(tables):
    from nlbench.sweep.results import to_frame, write_csv

    folder, a, _ = tables
    sweep = build_sweep(a, "test")
    ok = {"run_id": sweep.cells[0].run_id, "status": "ok", "params": 1000, "top1": 50.0, "failed_step": None}
    raised = {"run_id": sweep.cells[1].run_id, "status": "failed", "reason": "RuntimeError: x"}  # no params
    write_csv(to_frame(sweep, {sweep.cells[0].key: ok}), "one.csv")
    write_csv(to_frame(sweep, {sweep.cells[0].key: ok, sweep.cells[1].key: raised}), "two.csv")
    assert Path("one.csv").read_text().splitlines()[1] == Path("two.csv").read_text().splitlines()[1]
    assert ",1000," in Path("two.csv").read_text().splitlines()[1]


def _dead_claims(sweep, grace_s: int) -> None:
    """What kill -9 leaves in the storage, three ways: a claim that beat once, a claim killed before its first
    beat, and (older nlbench) a stale trial with the WAITING copy optuna's retry callback queued for it."""
    Path("results/test").mkdir(parents=True)
    storage = open_storage(default_storage("results", "test"), grace_s)
    ledger = Ledger(storage, [sweep], Timing(grace_s), session="dead")
    assert ledger.claim(sweep, sweep.cells[0]) is not None  # beat once, then died
    study_id = storage.get_study_id_from_name(sweep.name)
    template = optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING,
                                         user_attrs={"cell": sweep.cells[1].key}, system_attrs={"worker": "x:1"})
    storage.create_new_trial(study_id, template_trial=template)  # died before its first beat
    study = optuna.load_study(study_name=sweep.name, storage=storage)
    study.enqueue_trial({"cell": sweep.cells[2].key})  # the queued retry nobody ran


def test_trials_of_killed_processes_are_redone(tables, monkeypatch):
    folder, a, _ = tables
    sweep = build_sweep(a, "test")
    _dead_claims(sweep, grace_s=2)
    time.sleep(2.5)
    spy = _spy(monkeypatch)
    frame = _within(60, lambda: runner.run_sweep(a, "test", progress=False, grace_s=2))  # the old runner hung
    assert sorted(c[0] for c in spy.calls) == sorted(c.run_id for c in sweep.cells)
    assert len(frame) == 6
    study = optuna.load_study(study_name=sweep.name, storage="sqlite:///results/test/sweeps.db")
    complete = [cell_of(t) for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(complete) == sorted(c.key for c in sweep.cells)  # every cell done once
    assert sum(t.state == optuna.trial.TrialState.FAIL for t in study.trials) == 3


def test_a_live_claim_is_not_taken_for_dead(tables, monkeypatch):
    folder, a, _ = tables
    sweep = build_sweep(a, "test")
    Path("results/test").mkdir(parents=True)
    storage = open_storage(default_storage("results", "test"), 3)
    other = Ledger(storage, [sweep], Timing(3), session="other")
    trial_id = other.claim(sweep, sweep.cells[0])
    assert other.claim(sweep, sweep.cells[0]) is None  # the first claim of a cell wins
    spy = _spy(monkeypatch)
    with Heartbeat(storage, trial_id, 1):  # the other process lives on
        import threading

        finish = threading.Timer(5.0, lambda: other.complete(sweep, sweep.cells[0], trial_id,
                                                             {"run_id": sweep.cells[0].run_id, "status": "ok",
                                                              "top1": 1.0}, False))
        finish.start()
        frame = runner.run_sweep(a, "test", progress=False, grace_s=3)
        finish.join()
    assert sweep.cells[0].run_id not in [c[0] for c in spy.calls] and len(spy.calls) == 5
    assert len(frame) == 6 and frame["top1"].iloc[0] == 1.0


def test_failed_runs_are_recorded_and_the_sweep_goes_on(tables, monkeypatch, capsys):
    folder, _, _ = tables
    table = _table(folder, "tf", [
        {"row": "C2D", "model": {"nl_blocks": 0}},
        {"row": "NaN", "model": {"nl_blocks": 0}, "recipe": {"lr": 1.0e30}},  # the loss is NaN at step 1
        {"row": "raises", "model": {"nl_blocks": 0, "init_from": "/nonexistent.pt"}},  # train_run raises
    ])
    spy = _spy(monkeypatch)
    frame = runner.run_sweep(table, "test", progress=True)
    assert len(spy.calls) == 6
    csv = pd.read_csv("results/test/tf.csv", keep_default_na=False)
    assert len(csv) == 6 and list(csv["status"]) == ["ok", "ok", "failed", "failed", "failed", "failed"]
    assert set(csv[csv["row"] == "NaN"]["reason"]) == {"loss is nan at step 1"}
    assert set(csv[csv["row"] == "NaN"]["failed_step"]) == {"1"}  # (read as text: keep_default_na=False)
    assert set(csv[csv["row"] == "raises"]["reason"]) == {
        "ConfigError: model.init_from='/nonexistent.pt': no such file"}
    assert len(frame) == 6
    out = capsys.readouterr().out
    assert out.count("failed: loss is nan at step 1") == 2 and out.count("top1 ") == 2, out
    # a failed run has its record: it is not retrained; a run that raised has none: the next sweep retries it
    spy2 = _spy(monkeypatch)
    runner.run_sweep(table, "test", progress=False)
    assert sorted(t[2][1] for t in spy2.calls) == ["raises", "raises"]
    assert set(pd.read_csv("results/test/tf.csv", keep_default_na=False)["status"]) == {"ok", "failed"}


def test_one_pool_over_tables_trains_a_shared_run_once(tables, monkeypatch):
    from nlbench.sweep import pool, progress

    folder, a, b = tables
    looks, update = [], progress.Watch.update
    monkeypatch.setattr(progress.Watch, "update", lambda self: (looks.append(time.monotonic()), update(self)))
    outcome = runner.run_sweeps([a, b], "test", workers=2, progress=False)  # spawned workers, real train_run
    # The parent reads every trial to follow the sweep: not once a second, which took the workers' CPU
    ticks = looks[1:-1]  # the first look is on entering, the last the final one after the workers
    gaps = [y - x for x, y in zip(ticks, ticks[1:])]
    assert len(gaps) >= 2 and all(g >= pool.TICK_S - 0.01 for g in gaps), gaps
    assert [len(f) for f in outcome.frames.values()] == [6, 6]
    storage = "sqlite:///results/test/sweeps.db"
    trained, workers = [], set()
    for name in ("test/ta", "test/tb"):
        for t in optuna.load_study(study_name=name, storage=storage).trials:
            assert t.state == optuna.trial.TrialState.COMPLETE
            workers.add(t.system_attrs["worker"])
            if not t.user_attrs["reused"]:
                trained.append(t.user_attrs["run_id"])
    assert len(trained) == len(set(trained)) == 8  # ta's 6 runs + tb's 2 new ones; tb's shared rows reused
    assert len(workers) == 2 and outcome.trained == 8 and outcome.reused == 4
    assert 0 < outcome.busy_s and 0 < outcome.utilisation <= 1
    last = json.loads(Path("results/test/last_sweep.json").read_text())
    assert last["workers"] == 2 and last["trained"] == 8 and last["tables"] == ["ta", "tb"]


def test_a_sweep_that_trains_nothing_keeps_the_last_sweeps_record(tables, capsys):
    folder, a, _ = tables
    runner.run_sweeps([a], "test", progress=False)
    path = Path("results/test/last_sweep.json")
    made = path.read_text()
    assert json.loads(made)["trained"] == 6
    again = runner.run_sweeps([a], "test", progress=False)  # every cell done: nothing claimed, nothing trained
    assert again.trained == 0 and len(again.frames["test/ta"]) == 6
    assert path.read_text() == made  # still the sweep that made the results


@pytest.mark.parametrize("workers", [1, 2])
def test_progress_shows_a_line_per_finished_run(tables, capsys, workers):
    folder, a, b = tables
    runner.run_sweeps([a, b], "test", workers=workers, progress=True)
    out = capsys.readouterr().out
    assert out.count("top1 ") == 12 and out.count("reused") == 4, out  # 8 trained, tb's 4 shared cells reused
    assert "ta: NL5 seed=1" in out and "tb: long seed=0" in out and "test/tb" in out


def test_workers_share_the_grid(tables, monkeypatch):
    folder, a, _ = tables
    frame = runner.run_sweep(a, "test", workers=2, progress=False)
    assert len(frame) == 6 and not frame.duplicated(["row", "seed"]).any()
    runs = Path("results/test/runs")
    assert len([p for p in runs.iterdir() if not p.name.startswith(".")]) == 6


@pytest.mark.parametrize("profile", ["smoke", "tiny", "paper"])
def test_every_ablation_table_builds_for_every_profile(profile, tmp_path):
    assert {p.stem for p in TABLES} == {
        "2a_instantiation", "2b_stage", "2c_blocks", "2d_space_time", "2e_nl_vs_3d", "2f_nl_i3d", "2g_long_clips",
        "bottleneck", "successors"}
    assert set(load_profiles(ABLATIONS / "profiles.yaml")) == {"smoke", "tiny", "paper"}
    data = None
    if profile == "paper":
        for split in ("train", "val"):
            (tmp_path / split / "class_a").mkdir(parents=True)
        data = tmp_path
    seeds = {"smoke": 1, "tiny": 5, "paper": 1}[profile]
    for path in TABLES:
        sweep = build_sweep(path, profile, data=data)  # every cell's RunConfig is validated
        spec = yaml.safe_load(path.read_text())
        assert len(sweep.cells) == len(spec["rows"]) * seeds
        assert sweep.table.baseline in {r.label for r in sweep.table.rows}
        for row in spec["rows"]:
            assert "paper" in row
        if profile == "paper":
            assert {c.config.data.root for c in sweep.cells} == {str(tmp_path)}
    long = build_sweep(ABLATIONS / "2g_long_clips.yaml", profile, data=data)
    short = build_sweep(ABLATIONS / "2f_nl_i3d.yaml", profile, data=data)
    assert min(c.config.data.frames for c in long.cells) > max(c.config.data.frames for c in short.cells)
    if profile == "paper":
        assert {(c.config.data.frames, c.config.data.sampling_rate, c.config.recipe.freeze_bn) for c in long.cells} \
            == {(128, 1, True)}


def test_shared_runs_across_ablation_tables():
    ids = {}
    for path in TABLES:
        for cell in build_sweep(path, "smoke").cells:
            ids.setdefault(cell.run_id, set()).add(path.stem)
    c2d_r50 = build_sweep(ABLATIONS / "2a_instantiation.yaml", "smoke").cells[0].run_id
    # bottleneck's C2D row is the baseline of its variants' gains: the same run as the others' R50 C2D
    assert ids[c2d_r50] == {"2a_instantiation", "2b_stage", "2c_blocks", "2d_space_time", "2f_nl_i3d", "bottleneck",
                            "successors"}
    # The same model spelled two ways is one run: the bottleneck row names the released block's defaults
    # (C/2 as inner_ratio 0.5, pooling before phi/g) that 2c's 5-block model leaves to its variant.
    rows = {c.row: c.run_id for c in build_sweep(ABLATIONS / "bottleneck.yaml", "smoke").cells}
    assert "bottleneck" in ids[rows["C/2, pool before phi/g"]] and "2c_blocks" in ids[rows["C/2, pool before phi/g"]]
    assert ids[rows["C/2"]] == {"bottleneck"}  # pooling after phi/g is another model
    # The successors table's NL row is Table 2c's 5-block run; its other blocks are runs of their own.
    successors = {c.row: c.run_id for c in build_sweep(ABLATIONS / "successors.yaml", "smoke").cells}
    assert ids[successors["NL 5-block"]] == {"2c_blocks", "2d_space_time", "bottleneck", "successors"}
    assert sum(ids[r] == {"successors"} for r in successors.values()) == 5
    assert len(ids) == 38  # unique runs per seed over all tables


def _cli_error(capsys, argv) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("nlbench: error: ") and "\n" not in err, (code, err)
    assert not Path("results").exists()
    return err


def test_bad_input_is_one_line_and_touches_nothing(tables, capsys, tmp_path):
    folder, a, _ = tables
    bad_key = _table(folder, "bad_key", [{"row": "x", "model": {"nl_blocks": 0}, "colour": 1}])
    assert "bad_key.yaml" in (e := _cli_error(capsys, ["sweep", str(bad_key), "--profile", "test"])) and "colour" in e
    bad_model_key = _table(folder, "bad_model", [{"row": "x", "model": {"nl_blokcs": 0}}])
    e = _cli_error(capsys, ["sweep", str(bad_model_key), "--profile", "test"])
    assert "bad_model.yaml" in e and "nl_blokcs" in e and "'x'" in e
    no_model = _table(folder, "no_model", [{"row": "x", "data": {"frames": 8}}])
    assert "missing model" in _cli_error(capsys, ["sweep", str(no_model), "--profile", "test"])
    assert "unknown profile 'nope'" in _cli_error(capsys, ["sweep", str(a), "--profile", "nope"])
    e = _cli_error(capsys, ["sweep", str(a), "--profile", "test", "--storage", "sqlite:////nonexistent/dir/x.db"])
    assert "sqlite:////nonexistent/dir/x.db" in e
    e = _cli_error(capsys, ["sweep", str(a), "--profile", "test", "--storage", "postgresql://me:secret@127.0.0.1:1/db"])
    assert "127.0.0.1:1" in e and "secret" not in e
    assert "needs a data set" in _cli_error(capsys, ["sweep", str(a), "--profile", "paperish"])
    e = _cli_error(capsys, ["sweep", str(a), "--profile", "paperish", "--data", str(tmp_path / "abl")])
    assert "not a data set" in e
    # one bad table among good ones: nothing runs
    assert "bad_key" in _cli_error(capsys, ["sweep", str(a), str(bad_key), "--profile", "test"])
    claims = _table(folder, "bad_claim", [{"row": "x", "model": {}}],
                    claims=[{"text": "t", "kind": "above", "rows": ["y"], "than": "x"}])
    assert "'y' is not a row label" in _cli_error(capsys, ["sweep", str(claims), "--profile", "test"])


def test_cli_sweep_several_tables(tables, monkeypatch, capsys):
    folder, a, b = tables
    spy = _spy(monkeypatch)
    code = main(["sweep", str(a), str(b), str(folder / "profiles.yaml"), "--profile", "test", "--quiet"])
    assert code == 0 and len(spy.calls) == 8
    out = capsys.readouterr().out
    assert "test/ta: 6/6 runs finished, 0 failed" in out and "test/tb: 6/6" in out
    assert "sweep: 8 runs trained, 4 reused; workers busy" in out and "elapsed" in out


def test_real_train_run_smoke(tmp_path, monkeypatch):
    """The real train_run on configs/smoke.yaml: two rows, one seed."""
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "abl"
    folder.mkdir()
    profiles = {"smoke": {"config": str(REPO / "configs" / "smoke.yaml"), "seeds": [0]}}
    (folder / "profiles.yaml").write_text(yaml.safe_dump(profiles))
    table = _table(folder, "real", [{"row": "C2D", "model": {"nl_blocks": 0}},
                                    {"row": "NL", "model": {"nl_blocks": 1}}])
    frame = runner.run_sweep(table, "smoke", progress=False)
    assert list(frame["status"]) == ["ok", "ok"], frame["reason"].tolist()
    assert frame["params"].iloc[1] > frame["params"].iloc[0] and (frame["gflops"] > 0).all()
    for run_id in frame["run_id"]:
        assert (Path("results/smoke/runs") / run_id / "record.json").is_file()


def test_recipe_search_random(tables, monkeypatch):
    from nlbench.sweep.search import run_search

    folder, a, _ = tables
    spy = _spy(monkeypatch)
    frame = run_search(a, "NL1", profile="test", method="random", trials=3, progress=False)
    assert len(spy.calls) == 3 and len(frame) == 3 and set(frame["state"]) <= {"COMPLETE", "PRUNED"}
    assert all(t[1] == "test/ta/search" for t in spy.calls)
    base = build_sweep(a, "test").cells[0].config.recipe.lr
    assert frame["lr"].between(base / 10, base * 10).all()
    assert Path("results/test/ta_search_NL1.csv").is_file()
    assert "'nope' is not a row label" in str(pytest.raises(ConfigError, run_search, a, "nope", profile="test").value)


def test_pruning_stops_a_real_run_at_a_validation_point(tables):
    from nlbench.sweep.search import PruningCallback

    folder, a, _ = tables
    config = build_sweep(a, "test").cells[0].config.replace(recipe={"val_points": 2})
    keep = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    trial = keep.ask()
    record = train_run(config, "kept", progress=False, callbacks=[PruningCallback(trial)])
    assert record["status"] == "ok" and sorted(trial.storage.get_trial(trial._trial_id).intermediate_values) == [1, 2]
    assert [p["step"] for p in record["curve"]] == [1, 2]  # the points the pruner saw are the run's curve

    prune = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=101.0))
    trial = prune.ask()
    tracked = config.replace(wandb={"enabled": True, "mode": "offline"})
    with pytest.raises(optuna.TrialPruned, match="pruned at step 1"):
        train_run(tracked, "pruned", progress=False, callbacks=[PruningCallback(trial)])
    assert not Path("pruned/record.json").exists()
    import wandb

    assert wandb.run is None  # the pruned run's W&B run was finished: the next trial's logger cannot reuse it


def test_report_readme_states_the_last_sweeps_busy_time(tmp_path):
    from nlbench.report.build import _last_sweep

    assert _last_sweep(tmp_path) == []
    (tmp_path / "last_sweep.json").write_text(json.dumps(
        {"workers": 2, "elapsed_s": 600, "busy_s": 1080, "utilisation": 0.9, "trained": 33, "reused": 14}))
    assert _last_sweep(tmp_path) == ["- Last `nlbench sweep` call: 2 workers busy 18.0 min of 2 x 10.0 min elapsed "
                                     "(90 %); 33 runs trained, 14 reused"]
    (tmp_path / "last_sweep.json").write_text(json.dumps(
        {"workers": 2, "elapsed_s": 600, "busy_s": 1080, "utilisation": 0.9, "trained": 33, "reused": 14,
         "interrupted": True}))
    assert _last_sweep(tmp_path)[0].startswith("- Last `nlbench sweep` call (stopped part-way): 2 workers busy")
