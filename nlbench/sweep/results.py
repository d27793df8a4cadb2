"""A sweep's results file: ``results/<profile>/<table>.csv``, one row per finished (row, seed), written atomically.

Columns: table, row, the knobs (named by their YAML keys), seed, run_id, the record's CSV columns
(``nlbench.record.CSV_COLUMNS``: the run's costs, accuracies, status, reason, wall_s), ``family_<family>``
(the test accuracy within one family, a cue layout of the synthetic benchmark, one column per family the
records name, in the order they first appear), code_commit and code_dirty (the code version that trained the
run), machine. A row comes from the run's record as the cell's trial in the optuna storage keeps it (the same
on every machine that shares the storage); a row, once written, never changes.
"""
from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from nlbench.io import atomic_write_text
from nlbench.record import CSV_COLUMNS
from nlbench.sweep.spec import Cell, Sweep

FAMILY_PREFIX = "family_"  # + family name: the per-family test top-1 columns (from the record's per_family)


def machine_summary(machine: dict | str | None) -> str:
    """``{"cpu": ..., "cores": "2", "torch": ...}`` -> ``"AMD EPYC 7B13, 2 threads, torch 2.13.0"``."""
    if not machine:
        return ""
    if isinstance(machine, str):
        return machine
    parts = []
    if machine.get("gpu"):
        devices = machine.get("devices")
        parts.append(f"{machine['gpu']}" + (f" x{devices}" if devices not in (None, "1", 1) else ""))
    parts.append(str(machine.get("cpu", "?")))
    if machine.get("cores"):
        parts.append(f"{machine['cores']} threads")
    if machine.get("torch"):
        parts.append(f"torch {machine['torch']}")
    return ", ".join(parts)


def family_columns(columns) -> list[str]:
    """The ``family_<family>`` names among ``columns`` (of a frame, or of rows), each once, in first-seen order."""
    return [c for c in dict.fromkeys(columns) if c.startswith(FAMILY_PREFIX)]


def csv_row(sweep: Sweep, cell: Cell, record: dict) -> dict:
    row = {"table": sweep.table.name, "row": cell.row, **cell.knobs, "seed": cell.seed, "run_id": cell.run_id}
    row.update({k: record.get(k) for k in CSV_COLUMNS})
    row.update({FAMILY_PREFIX + k: v for k, v in (record.get("per_family") or {}).items()})
    version = record.get("code_version") or {}
    row["code_commit"], row["code_dirty"] = version.get("commit"), version.get("dirty")
    row["machine"] = machine_summary(record.get("machine"))
    return row


def columns(sweep: Sweep, families: list[str] = ()) -> list[str]:
    return ["table", "row", *sweep.knob_columns, "seed", "run_id", *CSV_COLUMNS, *families, "code_commit",
            "code_dirty", "machine"]


def to_frame(sweep: Sweep, records: dict[str, dict]) -> pd.DataFrame:
    """``records``: cell key -> record; cells without one are left out. Rows in the table's order, then seed."""
    found = [(c, records[c.key]) for c in sweep.cells if c.key in records]
    rows = [csv_row(sweep, c, r) for c, r in found]
    families = family_columns(column for row in rows for column in row)
    # Values kept as they are (object columns): a row's text must not change when another row appears (a
    # float64 column would print an int count as 1000.0 once some row lacks it).
    frame = pd.DataFrame(rows, columns=columns(sweep, families), dtype=object)
    for column in sweep.knob_columns:  # a list knob (explicit NL placements) as text
        frame[column] = frame[column].map(lambda v: str(v) if isinstance(v, list) else v)
    return frame


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    atomic_write_text(path, buffer.getvalue())


__all__ = ["FAMILY_PREFIX", "columns", "csv_row", "family_columns", "machine_summary", "to_frame", "write_csv"]
