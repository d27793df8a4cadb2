"""A run's record: ``record.json`` in its run directory, the one account of a run that everything else reads.

``RunRecord`` declares every field once: its type, what it says, and where else it shows (``csv``: a column of
a sweep's results file, at that position, the CSV's own order being older than the record's; ``summary``:
printed after ``nlbench train`` / ``nlbench eval``; ``cost``: a cost column of the ablation report). The
writer, the results CSV, the CLI summary, the ablation report and the reader of records back from W&B all take
their fields from here, so a new field is one line below.

In code a record is the plain dict that JSON gives (every reader of results works on those); the writer checks
it against ``RunRecord`` (an undeclared field or a value of the wrong type is a bug, refused). A record holds
only the fields its run wrote, in the order declared here: a video run has ``data``, a failed one
``traceback``, an evaluation ``weights``; a field that is absent reads as None. Records written before a
field existed (the committed tiny records have no ``kernels``) stay as they are.
"""
from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from nlbench.io import atomic_write_text

WEIGHTS = "model.pt"  # beside a run's record: its trained weights (not committed), what init_from: run:<id> loads


@dataclass(frozen=True)
class Cost:
    """How the ablation report shows a cost: ``column`` of its summary (the mean over the runs that measured
    it, times ``scale``), headed ``label`` and formatted with ``spec`` in its tables."""

    column: str
    label: str
    scale: float = 1.0
    spec: str = ".1f"


def _field(doc: str, *, csv: int | None = None, summary: bool = False, cost: Cost | None = None,
           required: bool = False):
    meta = {"doc": doc, "csv": csv, "summary": summary, "cost": cost}
    return field(metadata=meta) if required else field(default=None, metadata=meta)


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    """The fields of ``record.json``, in the order they are written (the committed records' order)."""

    # What ran, and how it ended.
    run_id: str = _field("the run's identity: a hash of its config (nlbench.training.config)", summary=True,
                         required=True)
    name: str = _field("the run config's name, else the model's (e.g. R50 NL C2D 1-block res4)", summary=True,
                       required=True)
    status: Literal["ok", "failed"] = _field("ok, or failed: training or testing raised (the run still has a "
                                             "record)", csv=13, summary=True, required=True)
    reason: str | None = _field("why it failed, one line", csv=14, summary=True)
    failed_step: int | None = _field("the training step it failed at", csv=15, summary=True)
    # The model's cost (nlbench.measure), measured once per distinct model on a machine; absent when
    # measure.enabled is false.
    params: int | None = _field("parameters", csv=1, summary=True, cost=Cost("params_m", "params (M)", 1e-6, ".3f"))
    gflops: float | None = _field("multiply-adds of one clip, in G (fvcore)", csv=2, summary=True,
                                  cost=Cost("gflops", "GFLOPs", spec=".3f"))
    latency_ms: float | None = _field("median forward time of one clip, training mode", csv=3, summary=True,
                                      cost=Cost("latency_ms", "latency (ms)"))
    latency_eval_ms: float | None = _field("median forward time of an eval_batch in eval mode, no grad", csv=4,
                                           summary=True)
    eval_batch: int | None = _field("the batch latency_eval_ms times")
    peak_mem_mb: float | None = _field("peak memory of a training step (None where it cannot be measured)", csv=7,
                                       summary=True, cost=Cost("peak_mem_mb", "peak mem (MB)"))
    unsupported_ops: dict[str, int] | None = _field("ops fvcore could not count -> how often they ran")
    timings_ms: dict[str, float | None] | None = _field("median time of each timed pass (fwd_b1, fwd_bwd_b16, ...)")
    nonlocal_blocks: list[dict[str, Any]] | None = _field(
        "each non-local block's name, input (T, H, W) and the number of keys it attends over")
    data: dict[str, Any] | None = _field("video data only: the resolved transform, clip sampling, test views and "
                                         "the short clips of each split")
    code_version: dict[str, Any] | None = _field("the git commit of the code and whether it was dirty")
    packages: dict[str, str | None] | None = _field("versions of the packages the numbers depend on")
    kernels: dict[str, Any] | None = _field("the CPU kernels the run computed with, and their pin (nlbench.numerics)")
    numerics: int | None = _field("the numerics version of the code (absent: version 1)")
    traceback: str | None = _field("failed on an error: where it was raised")
    # Accuracies: of the last validation, then of the multi-view test (every view of a video, ensembled).
    val_top1: float | None = _field("validation top-1 (%) at the end of training", csv=10, summary=True)
    val_top5: float | None = _field("validation top-5 (%); None with 10 classes or fewer", csv=11, summary=True)
    top1: float | None = _field("test top-1 (%)", csv=8, summary=True)
    top5: float | None = _field("test top-5 (%); None with 10 classes or fewer", csv=9, summary=True)
    steps: int | None = _field("training steps run")
    epochs: int | None = _field("training epochs completed")
    curve: list[dict[str, Any]] | None = _field("validation top-1 through training: step, epoch, val_top1 (and "
                                                 "val_group_top1 where the val clips come in groups)")
    per_class: dict[str, float] | None = _field("test top-1 (%) within each class")
    mean_class_top1: float | None = _field("the mean of per_class", csv=12, summary=True)
    per_family: dict[str, float] | None = _field("synthetic data: test top-1 (%) within each family of cue layouts "
                                                 "(the results CSV's family_<family> columns)")
    group_top1: float | None = _field("synthetic design 3: the % of test quadruples (one layout, four cue "
                                      "colourings) with all four clips right; an additive model gets none of "
                                      "a temporal family's", summary=True)
    per_family_group: dict[str, float] | None = _field("group_top1 within each family of cue layouts")
    # nlbench eval: the weights tested.
    weights: str | None = _field("nlbench eval: the weights file or folder given", summary=True)
    weights_sha256: str | None = _field("nlbench eval: the weights file's sha256")
    split: str | None = _field("nlbench eval: the split tested (val or test)", summary=True)
    # Training throughput, in the training loop.
    step_ms: float | None = _field("median time of a training step", csv=6, summary=True)
    train_clips_per_s: float | None = _field("training clips per second, this process's (per rank under DDP)",
                                             csv=5, summary=True,
                                             cost=Cost("train_clips_per_s", "train clips/s"))
    # Where and when.
    wall_s: float | None = _field("seconds the whole run took", csv=16, summary=True)
    machine: dict[str, Any] | None = _field("cpu, threads, torch, device, gpu, and the trainer's devices, nodes, "
                                            "strategy and precision")
    started: str | None = _field("start, ISO 8601 UTC")
    finished: str | None = _field("end, ISO 8601 UTC")
    config: dict[str, Any] | None = _field("the whole run config (its W&B config, not its W&B summary)")
    out: str | None = _field("nlbench eval: the folder of this record")
    wandb_dir: str | None = _field("the run's W&B folder")
    wandb_run: str | None = _field("a record read back from W&B: the run it came from")
    reused: bool | None = _field("a record read back from W&B: a sweep agent found the run finished and logged "
                                 "its record again")


FIELDS = fields(RunRecord)
NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)
CSV_COLUMNS: tuple[str, ...] = tuple(f.name for f in sorted((f for f in FIELDS if f.metadata["csv"]),
                                                            key=lambda f: f.metadata["csv"]))
SUMMARY: tuple[str, ...] = tuple(f.name for f in FIELDS if f.metadata["summary"])
COSTS: dict[str, Cost] = {f.name: f.metadata["cost"] for f in FIELDS if f.metadata["cost"]}


@functools.cache
def _validator():
    from pydantic import TypeAdapter  # only where a record is written

    return TypeAdapter(RunRecord)


def finite(value):
    """NaN/inf are not JSON: written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def record_json(record: dict) -> str:
    """The text of ``record.json``: the fields in their declared order, NaN as null. A ValueError names a field
    that is not declared or a value not of its field's type (a bug in the code that wrote it)."""
    unknown = [k for k in record if k not in NAMES]
    if unknown:
        raise ValueError(f"record field {unknown[0]!r} is not declared in nlbench.record.RunRecord")
    record = finite(record)
    _validator().validate_python(record)
    return json.dumps({k: record[k] for k in NAMES if k in record}, indent=2) + "\n"


def write_record(folder: str | Path, record: dict) -> None:
    """``folder/record.json``, atomically: a folder with a record is a finished run."""
    atomic_write_text(Path(folder) / "record.json", record_json(record))


def read_record(folder: str | Path) -> dict | None:
    path = Path(folder) / "record.json"
    return json.loads(path.read_text()) if path.is_file() else None


__all__ = ["COSTS", "CSV_COLUMNS", "Cost", "FIELDS", "NAMES", "RunRecord", "SUMMARY", "WEIGHTS", "finite",
           "read_record", "record_json", "write_record"]
