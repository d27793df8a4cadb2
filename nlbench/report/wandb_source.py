"""Run records back from W&B: ``nlbench report --from-wandb PATH|ENTITY/PROJECT``.

A sweep run by agents on many machines has its records in W&B, not in one ``results/`` folder. Every
nlbench run stores its whole record in its W&B summary (``tracking.run_summary``) and its run config in its
W&B config, so a record is rebuilt from those two alone, by one function (``record_of``) for both sources:

- offline run folders (``offline-run-*``, what ``wandb sync`` would upload; also the ``run-*`` folders of
  online runs): the run's ``run-<id>.wandb`` transaction log, read here;
- the public API's runs of a project (``wandb.Api().runs("entity/project")``), when online.

``materialise`` then writes what ``nlbench report`` reads: ``<dest>/<profile>/<table>.csv`` for every table
with runs (rows from ``build_sweep``, the cells matched by ``run_id``, as the optuna sweep writes it) and
the records under ``<dest>/<profile>/runs/<run_id>/record.json``.
"""
from __future__ import annotations

import json
import shutil
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from nlbench.record import NAMES as RECORD_FIELDS, write_record
from nlbench.sweep.results import to_frame, write_csv
from nlbench.sweep.spec import build_sweep, table_files

# Keys of a run's W&B config that are not its run config: nlbench's own labels and W&B's.
LABEL_KEYS = ("run_id", "table", "row", "profile", "_wandb")


@dataclass
class WandbRun:
    """What W&B stores of a run, as plain values, whichever way it was read."""

    id: str
    config: dict
    summary: dict
    group: str | None = None
    tags: tuple[str, ...] = ()
    state: str = "unknown"  # finished / failed / crashed / running (the API's states)
    sweep_id: str | None = None
    source: str = ""
    extra: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------- the transaction log


# wandb 0.31 writes ``run-<id>.wandb`` from its Go core and no longer ships a Python reader
# (``wandb.sdk.internal.datastore`` is gone), so the format is read here: LevelDB's log format
# (https://github.com/google/leveldb/blob/main/doc/log_format.md) behind a 7-byte ":W&B" header, each
# payload one ``wandb.proto.wandb_internal_pb2.Record``.
HEADER = struct.Struct("<4sHB")  # ident ":W&B", magic 0xBEE1, version 0
CHUNK = struct.Struct("<IHB")  # crc32 of type byte + data, length, type
BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
_TYPE_CRC = {t: zlib.crc32(bytes([t])) for t in (FULL, FIRST, MIDDLE, LAST)}


def read_log(path: str | Path):
    """The records of a ``.wandb`` file, in order; a torn last record (a killed run) ends the stream."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    if len(data) < HEADER.size or HEADER.unpack_from(data)[:2] != (b":W&B", 0xBEE1):
        raise ValueError(f"{path}: not a W&B transaction log (no :W&B header)")
    pos, parts = HEADER.size, []
    while pos + CHUNK.size <= len(data):
        left = BLOCK - pos % BLOCK
        if left < CHUNK.size:  # the rest of a block too short for a chunk header is padding
            pos += left
            continue
        crc, length, kind = CHUNK.unpack_from(data, pos)
        chunk = data[pos + CHUNK.size: pos + CHUNK.size + length]
        if kind not in _TYPE_CRC or len(chunk) < length or zlib.crc32(chunk, _TYPE_CRC[kind]) != crc:
            break  # zero padding at the end, or a record being written when the process died
        pos += CHUNK.size + length
        parts.append(chunk)
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(b"".join(parts))
            parts = []
            yield record


def _set(target: dict, keys: list[str], value) -> None:
    for key in keys[:-1]:
        target = target.setdefault(key, {})
    target[keys[-1]] = value


def _apply(target: dict, items, removed=()) -> None:
    for item in items:
        keys = list(item.nested_key) or [item.key]
        _set(target, keys, json.loads(item.value_json))
    for item in removed:
        keys = list(item.nested_key) or [item.key]
        parent = target
        for key in keys[:-1]:
            parent = parent.get(key, {})
        parent.pop(keys[-1], None)


def read_offline_run(folder: str | Path) -> WandbRun:
    """A run folder (``offline-run-*`` or ``run-*``) -> its W&B id, config, summary, group, tags, state."""
    folder = Path(folder)
    logs = sorted(folder.glob("run-*.wandb"))
    if not logs:
        raise ValueError(f"{folder}: no run-*.wandb file")
    config: dict = {}
    summary: dict = {}
    run = WandbRun(id=logs[0].stem.removeprefix("run-"), config=config, summary=summary, state="running",
                   source=str(folder))
    for record in read_log(logs[0]):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.id, run.group, run.tags = r.run_id or run.id, r.run_group or None, tuple(r.tags)
            run.sweep_id = r.sweep_id or None
            _apply(config, r.config.update)
            _apply(summary, r.summary.update)
        elif kind == "config":
            _apply(config, record.config.update, record.config.remove)
        elif kind == "summary":
            _apply(summary, record.summary.update, record.summary.remove)
        elif kind == "exit":
            run.state = "finished" if record.exit.exit_code == 0 else "failed"
    return run


def offline_runs(path: str | Path) -> list[WandbRun]:
    """Every W&B run folder under ``path`` (itself one, or any folder holding them, e.g. ``results/``)."""
    path = Path(path)
    folders = [path] if list(path.glob("run-*.wandb")) else sorted(
        p.parent for p in path.rglob("run-*.wandb") if p.parent.name.startswith(("offline-run-", "run-")))
    return [read_offline_run(f) for f in dict.fromkeys(folders)]


# ------------------------------------------------------------------------------------- the public API


def _plain_config(config: dict) -> dict:
    # The API's config may come as {key: {"value": v, "desc": ...}} (the files' form) or as plain values.
    return {k: v["value"] if isinstance(v, dict) and set(v) <= {"value", "desc"} and "value" in v else v
            for k, v in config.items()}


def api_runs(project: str) -> list[WandbRun]:
    """The runs of ``ENTITY/PROJECT`` through ``wandb.Api`` (needs the server and a login)."""
    import wandb

    runs = []
    for r in wandb.Api().runs(project):
        summary = getattr(r.summary, "_json_dict", None) or dict(r.summary)
        sweep = getattr(r, "sweep", None)
        runs.append(WandbRun(id=r.id, config=_plain_config(dict(r.config)), summary=dict(summary),
                             group=r.group, tags=tuple(r.tags or ()), state=r.state,
                             sweep_id=getattr(sweep, "id", None), source=f"{project}/{r.id}"))
    return runs


def load_runs(source: str | Path) -> list[WandbRun]:
    """An existing folder: its offline run folders; otherwise ``ENTITY/PROJECT`` for the public API."""
    if Path(source).exists():
        return offline_runs(source)
    if str(source).count("/") != 1:
        raise ValueError(f"--from-wandb {source}: neither a folder of W&B run folders nor ENTITY/PROJECT")
    try:
        return api_runs(str(source))
    except Exception as e:  # not logged in, no network, no such project: wandb's own errors, one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ValueError(f"--from-wandb {source}: no such folder, and W&B cannot list project {source}: "
                         f"{type(e).__name__}: {first}") from None


# ---------------------------------------------------------------------------------------- records


def record_of(run: WandbRun) -> dict | None:
    """The nlbench record a W&B run holds (its summary, its config as ``config``); None for another kind of
    run (a report run, a run that died before it had a record)."""
    s = run.summary
    if not isinstance(s.get("run_id"), str) or s.get("status") not in ("ok", "failed"):
        return None
    # The summary also holds the last value of each logged curve (train/loss, lr, epoch) and W&B's own keys.
    record = {k: v for k, v in s.items() if k in RECORD_FIELDS}
    record["config"] = {k: v for k, v in run.config.items() if k not in LABEL_KEYS}
    record["wandb_run"] = run.source
    return record


def collect_records(runs: list[WandbRun]) -> dict[str, dict]:
    """nlbench run_id -> record; of several W&B runs of one run_id (a run reused by an agent, a redone one)
    the one that finished last."""
    out: dict[str, dict] = {}
    for run in runs:
        record = record_of(run)
        if record is None:
            continue
        kept = out.get(record["run_id"])
        if kept is None or str(record.get("finished") or "") >= str(kept.get("finished") or ""):
            out[record["run_id"]] = record
    return out


def materialise(source: str | Path, profile: str, dest: str | Path, ablations: str | Path = "ablations",
                data: str | None = None) -> tuple[Path, int]:
    """Write the results of every table with W&B runs under ``dest/profile``; (that folder, runs found)."""
    records = collect_records(load_runs(source))
    if not records:
        raise ValueError(f"--from-wandb {source}: no nlbench run records (no W&B run with a run_id and status "
                         f"in its summary)")
    out = Path(dest) / profile
    if out.is_dir():  # derived from W&B alone: what an earlier read left must not mix in
        shutil.rmtree(out)
    tables = table_files(ablations)
    used = 0
    for table in tables:
        sweep = build_sweep(table, profile, data)
        found = {c.key: records[c.run_id] for c in sweep.cells if c.run_id in records}
        if not found:
            continue
        for cell in sweep.cells:
            if cell.key in found:
                write_record(out / "runs" / cell.run_id, found[cell.key])
        write_csv(to_frame(sweep, found), out / f"{sweep.table.name}.csv")
        used += len(found)
    if not used:
        raise ValueError(f"--from-wandb {source}: {len(records)} run records, none is a cell of a table in "
                         f"{ablations}/ at profile {profile}")
    return out, len(records)


__all__ = ["WandbRun", "api_runs", "collect_records", "load_runs", "materialise", "offline_runs", "read_log",
           "read_offline_run", "record_of"]
