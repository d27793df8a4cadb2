"""A run of a sweep: its folder, its lock, and where its record comes from (here, the storage, or training).

A run is its config's run_id, in ``results/<profile>/runs/<run_id>/``; its ``record.json`` (written last,
atomically, by train_run) means finished. For a claimed cell a worker reuses the local record, else a record
of the same run_id completed in any table of the profile in the storage (trained on another machine), else it
trains the run. A file lock per run_id keeps the processes of a machine from training one run twice.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from pathlib import Path
from typing import Callable

from nlbench.numerics import compare
from nlbench.record import WEIGHTS, write_record
from nlbench.training.config import ConfigError
from nlbench.training.run import figures_only, read_record, train_run

RESTORING = ".weights"  # beside the run directories: backbones trained again for their weights (restore_weights)


def run_dir_of(results_dir: str | Path, profile: str, run_id: str) -> Path:
    return Path(results_dir) / profile / "runs" / run_id


@contextlib.contextmanager
def run_lock(run_dir: Path, block: bool = True):
    """An exclusive lock on this run_id among the processes of this machine (released when one dies).

    Yields True when held; with ``block=False``, False at once when another process holds it."""
    lock = run_dir.parent / ".locks" / f"{run_dir.name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def local_record(run_dir: Path, run_id: str) -> dict | None:
    record = read_record(run_dir)
    return record if record is not None and record.get("run_id") == run_id else None


def keep_record(run_dir: Path, record: dict) -> None:
    """Write a run's record trained elsewhere into this machine's run dir (what `nlbench report` reads)."""
    if run_dir.exists() and not (run_dir / "record.json").exists():
        shutil.rmtree(run_dir)  # what is there is an interrupted attempt of this run
    write_record(run_dir, record)  # the one writer: declared fields, their order


def obtain(config, run_dir: Path, stored: Callable[[str], dict | None] = lambda _: None,
           before_training: Callable[[], object] = lambda: None, **train) -> tuple[dict, bool]:
    """(record, reused) of one run, with its lock held by the caller: the local record, else one in the
    storage (``stored``), else trained now (``train``: train_run's keywords), after ``before_training`` (a
    cell's backbone: ``backbone_first``), so a reused run costs no backbone. The one way any cell (grid or
    search) gets its record."""
    record = local_record(run_dir, config.run_id)
    if record is not None:
        return record, True
    record = stored(config.run_id)
    if record is not None:
        keep_record(run_dir, record)
        return record, True
    if run_dir.exists():
        shutil.rmtree(run_dir)  # half-finished: redo from scratch
    before_training()
    record = train_run(config, run_dir, progress=False, **train)
    # The file's copy (JSON, NaN as null) is what the storage keeps: every machine's CSV row is then identical.
    return local_record(run_dir, config.run_id) or record, False


def obtain_backbone(config, runs_dir: Path, stored: Callable[[str], dict | None] = lambda _: None,
                    **train) -> tuple[dict, bool]:
    """``obtain`` of a cell's backbone (a profile's ``pretrain:``) in ``runs_dir``, under its own lock: the
    process that comes first trains it, the others wait and reuse its record, a later sweep finds it done.
    Called with the cell's lock held; no backbone waits on a cell's lock, so no two processes wait on each other."""
    run_dir = Path(runs_dir) / config.run_id
    with run_lock(run_dir):
        record, reused = obtain(config, run_dir, stored, **train)
        # A failed backbone has no weights to restore: its cells say so (model.init_from's one line).
        if reused and record.get("status") == "ok" and not (run_dir / WEIGHTS).is_file():
            restore_weights(config, run_dir, record)
        return record, reused


def restore_weights(config, run_dir: Path, record: dict) -> None:
    """Give a backbone whose record is here without its weights (a fresh clone: model.pt is not committed) its
    model.pt, by training it again from its config: the cells still to train must start from the weights its
    record describes, so the re-run is kept only when it gives the record's figures exactly (numerics.compare),
    else the cell stops with one line. The re-run's record stays in the scratch folder: the backbone's other
    cells, and a later sweep, read its verdict there instead of training it again."""
    scratch = run_dir.parent / RESTORING / run_dir.name
    again = local_record(scratch, config.run_id)
    if again is None or (again.get("status") == "ok" and not (scratch / WEIGHTS).is_file()):
        if scratch.exists():
            shutil.rmtree(scratch)  # an interrupted restoration
        train_run(figures_only(config), scratch, progress=False)
        again = local_record(scratch, config.run_id) or {}  # the file's copy, as obtain compares
    verdict, lines = compare(record, again)
    if verdict != "reproduced" or not (scratch / WEIGHTS).is_file():
        raise ConfigError(f"backbone {config.run_id}: its record is in {run_dir} without {WEIGHTS}, and training it "
                          f"again from its config (in {scratch}) gives other figures ({verdict}: {'; '.join(lines)}); "
                          "the cells fine-tuned from it would start from other weights than the finished ones did: "
                          "resume this grid on a machine with the record's kernels, or sweep into a new results folder")
    # train_run wrote the weights fsynced (io.atomic_file), and one rename moves them: whole or absent.
    os.replace(scratch / WEIGHTS, run_dir / WEIGHTS)
    shutil.rmtree(scratch)


def backbone_first(cell, runs_dir: Path, profile: str,
                   stored: Callable[[str], dict | None] = lambda _: None) -> Callable[[], object]:
    """What must run before ``cell`` trains: its backbone (a profile's ``pretrain:``) obtained, or nothing."""
    if cell.pretrain is None:
        return lambda: None
    return lambda: obtain_backbone(cell.pretrain, runs_dir, stored, **backbone_tracking(profile, cell.pretrain))


def backbone_tracking(profile: str, config) -> dict:
    """A backbone's W&B group and tags (train_run's keywords): its own group, not a table's."""
    return {"wandb_group": f"{profile}/pretrain",
            "wandb_tags": ("pretrain", f"depth={config.model.depth}", f"seed={config.seed}")}


__all__ = ["backbone_first", "backbone_tracking", "keep_record", "local_record", "obtain", "obtain_backbone",
           "restore_weights", "run_dir_of", "run_lock"]
