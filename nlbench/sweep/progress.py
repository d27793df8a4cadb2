"""What a sweep call shows and writes while it goes, from the storage alone: each table's results CSV
(rewritten, atomically, whenever one of its cells is done), the records of runs trained on other machines,
and a progress bar per table with a line per finished run.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from nlbench.sweep.ledger import Ledger, cell_of, cell_records, cell_states
from nlbench.sweep.results import to_frame, write_csv
from nlbench.sweep.runs import keep_record, run_dir_of, run_lock
from nlbench.sweep.spec import Cell, Sweep


def quiet() -> None:
    """optuna and Lightning say warnings only: a sweep's progress is its own bar and lines."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)


class Watch:
    """Follows the storage: writes a table's CSV when one of its cells is done, keeps the records of runs
    trained elsewhere, shows a progress bar per table and a line per finished run."""

    def __init__(self, ledger: Ledger, results_dir: Path, enabled: bool):
        self.ledger, self.results_dir, self.enabled = ledger, results_dir, enabled
        self.frames: dict[str, pd.DataFrame] = {}
        self.seen: dict[str, set[str] | None] = {s.name: None for s in ledger.sweeps}
        self.bar, self.tasks = None, {}

    def __enter__(self):
        if self.enabled:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self.bar = Progress(
                TextColumn("[bold]{task.fields[table]}[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), transient=False,
            )
            self.bar.__enter__()
            self.tasks = {s.name: self.bar.add_task("", total=len(s.cells), table=s.name) for s in self.ledger.sweeps}
        self.update()
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def started(self, sweep: Sweep, cell: Cell) -> None:
        if self.bar is not None:
            self.bar.update(self.tasks[sweep.name], description=f"{cell.row} seed={cell.seed}")

    def update(self) -> None:
        for sweep in self.ledger.sweeps:
            trials = self.ledger.trials(sweep)
            done = {k for k, s in cell_states(sweep, trials).items() if s == "done"}
            records = cell_records(sweep, trials, self.results_dir)
            first = self.seen[sweep.name] is None
            new = done - (self.seen[sweep.name] or set())
            frame = to_frame(sweep, records)
            previous = self.frames.get(sweep.name)
            if len(frame) and (first or previous is None or not frame.equals(previous)):
                write_csv(frame, self.results_dir / sweep.profile.name / f"{sweep.table.name}.csv")
            self.frames[sweep.name] = frame
            for key in new:
                self._keep(sweep, sweep.cell(key), records.get(key))
            if not first:
                for cell in (c for c in sweep.cells if c.key in new):
                    self._line(sweep, cell, records.get(cell.key) or {}, trials)
            self.seen[sweep.name] = done
            if self.bar is not None:
                self.bar.update(self.tasks[sweep.name], completed=len(done), description="")

    def _keep(self, sweep: Sweep, cell: Cell | None, record: dict | None) -> None:
        """The record of a run trained on another machine, written here for `nlbench report` (the lock: not
        while a process of this machine is at that run)."""
        if cell is None or record is None or "config" not in record:
            return
        run_dir = run_dir_of(self.results_dir, sweep.profile.name, cell.run_id)
        if (run_dir / "record.json").exists():
            return
        with run_lock(run_dir, block=False) as held:
            if held and not (run_dir / "record.json").exists():
                keep_record(run_dir, record)

    def _line(self, sweep: Sweep, cell: Cell, record: dict, trials: list[FrozenTrial]) -> None:
        if self.bar is None:
            return
        reused = any(t.state == TrialState.COMPLETE and cell_of(t) == cell.key and t.user_attrs.get("reused")
                     for t in trials)
        score = sweep.profile.score  # what the profile's tables judge by (and the clip top-1 beside it)
        said = f"{score} {record.get(score)}" + (f", top1 {record.get('top1')}" if score != "top1" else "")
        what = said if record.get("status") == "ok" else f"[red]failed[/]: {record.get('reason')}"
        how = "reused" if reused else f"{record.get('wall_s') or 0:.0f} s"
        self.bar.console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {sweep.table.name}: {cell.row} seed={cell.seed} "
                               f"({cell.run_id}, {how}): {what}", soft_wrap=True)  # one line a run, for grep


__all__ = ["Watch", "quiet"]
