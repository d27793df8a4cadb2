"""One run: build the model and data from a RunConfig, measure the model's cost, train, evaluate, write the record.

The run directory holds ``config.yaml`` (written first), ``model.pt`` (the trained weights), the W&B offline
folder, and ``record.json`` (its fields: ``nlbench.record``), written atomically and last: a directory with a
record is a finished run (ok or failed), one without is a run that was interrupted and must be redone.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import statistics
import sys
import time
import traceback
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from nlbench.data import LoaderConfig, SyntheticDataModule, VideoDataModule
from nlbench.data.sampling import ClipSampling
from nlbench.io import atomic_file, atomic_write_text
from nlbench.measure import machine_info, measure_latency, nonlocal_geometry, profile_module
from nlbench.models import load_pretrained
from nlbench.numerics import NUMERICS_VERSION, pin
from nlbench.record import WEIGHTS, finite, read_record, write_record
from nlbench.seeds import derive_seed
from nlbench.training.callbacks import TrainThroughput, ValidationCurve, all_right
from nlbench.training.config import ConfigError, RunConfig, init_run
from nlbench.training.module import NonFiniteLossError, VideoClassifier
from nlbench.training.provenance import code_version, package_versions
from nlbench.training.tracking import make_wandb_logger, run_summary


class _NoAdvert(logging.Filter):
    """Lightning logs an advertisement for its cloud logger at every Trainer without it ("Tip: ... litlogger");
    a run's output is for the run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(_NoAdvert())

# Lightning 2.6 on torch 2.13 warns about a torch-internal pytree API on every fit; nothing to act on.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")

COSTS = ".costs"  # beside the run directories: each distinct model's measured cost (_measure_once)


def build_datamodule(config: RunConfig, test_split: str | None = None):
    """The run's data; ``test_split`` (val or test) is the split its multi-view test reads (None: test where
    the data has one, else val)."""
    d = config.data
    loader = LoaderConfig(batch_size=d.batch_size, eval_batch_size=d.eval_batch_size, num_workers=d.num_workers)
    if d.source == "synthetic":
        return SyntheticDataModule(d.synthetic(), loader, cache_dir=d.cache_dir, mean=d.mean, std=d.std, seed=config.seed,
                                   test_split=test_split or "test")
    if not Path(d.root).is_dir():
        raise ConfigError(f"data.root={d.root!r}: no such folder")
    sampling = ClipSampling(num_frames=d.frames, sampling_rate=d.sampling_rate, num_clips=d.num_clips,
                            short_clip=d.short_clip)
    return VideoDataModule(d.root, sampling, d.transform(), loader, seed=config.seed, index_cache=d.index_cache,
                           test_split=test_split)


def _describe_data(datamodule, stage: str | None = None) -> dict:
    """The record's account of a video run's data (resolved transform, views, short clips), with the
    short clips said in one line at the start of the run; ``stage="test"`` reads the test split only."""
    if not isinstance(datamodule, VideoDataModule):
        return {}
    try:
        # Every split (stage None): the short-clip counts (and an error under short_clip=error) up front.
        datamodule.setup(stage)
    except ValueError as e:
        raise ConfigError(f"data: {e}") from None
    short = datamodule.short_clips
    s = datamodule.sampling
    if any(c["short"] for c in short.values()):
        counts = ", ".join(f"{split} {c['short']}/{c['videos']}" for split, c in short.items())
        print(f"nlbench: videos shorter than a {s} clip ({s.num_frames * s.sampling_rate} frames): {counts}; "
              f"short_clip={s.short_clip}", file=sys.stderr)
    return {"data": {**datamodule.describe(), "short_clips": short}}


def build_model(config: RunConfig, num_classes: int, runs_dir: str | Path | None = None) -> torch.nn.Module:
    """The run's model, from ``model.init_from`` when it names one; ``runs_dir``: the folder of the run being
    trained, where ``init_from: run:<run_id>`` is looked up."""
    # Every layer from its own stream of the seed: rows of a table at one seed share the weights of the
    # layers they share (models.resnet.VideoResNet.reset_parameters).
    model = config.model.as_model_config(num_classes).build(seed=config.seed)
    if config.model.init_from:
        path = _init_path(config.model.init_from, runs_dir)
        if path.is_dir():  # the folder nlbench convert (or a run) writes
            path = path / WEIGHTS
        if not path.is_file():
            raise ConfigError(f"model.init_from={str(path)!r}: no such file")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        # A trained nlbench model has the fc of its own data set; an ImageNet checkpoint has 1000 classes.
        fc = {k: v for k, v in state.items() if k.startswith("fc.")}
        if fc and fc.get("fc.weight") is not None and fc["fc.weight"].shape[0] != num_classes:
            state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        try:
            load_pretrained(model, state)
        except ValueError as e:
            raise ConfigError(f"model.init_from={str(path)!r}: {e}") from None
    return model


def _init_path(init_from: str, runs_dir: str | Path | None) -> Path:
    """``model.init_from`` as a path: a run's folder for ``run:<run_id>`` (finished, ok), else as given."""
    run_id = init_run(init_from)
    if run_id is None:
        return Path(init_from)
    if runs_dir is None:
        raise ConfigError(f"model.init_from={init_from!r}: a run: init needs the runs folder of the run being "
                          f"trained (nlbench train --out, a sweep)")
    record = read_record(Path(runs_dir) / run_id)
    if record is None or record.get("run_id") != run_id or record.get("status") != "ok":
        state = "is not finished" if record is None else f"ended {record.get('status')!r}, not ok"
        raise ConfigError(f"model.init_from={init_from!r}: run {run_id} in {runs_dir} {state}")
    return Path(runs_dir) / run_id / WEIGHTS


def _total_steps(config: RunConfig, datamodule) -> int:
    r = config.recipe
    if r.max_steps:
        return r.max_steps
    datamodule.setup("fit")
    n = len(datamodule.datasets["train"])
    world = _world_size(config)
    return max(1, n // (config.data.batch_size * world)) * r.epochs


def _world_size(config: RunConfig) -> int:
    devices = config.trainer.devices
    per_node = devices if isinstance(devices, int) else 1
    return max(1, per_node) * config.trainer.num_nodes


def _measure(model: torch.nn.Module, config: RunConfig, device: torch.device) -> dict:
    """The model's cost, measured on a copy: the random batches it runs (through BN in training mode)
    leave the model that trains as initialised."""
    model = copy.deepcopy(model)
    d, m = config.data, config.measure
    shape = (3, d.frames, d.size, d.size)
    channels_last = config.trainer.channels_last
    profile = profile_module(
        model, shape, train_batch=d.batch_size, device=device, warmup=m.warmup, repeats=m.repeats,
        channels_last=channels_last,
    )
    eval_batch = m.eval_batch or d.eval_batch_size or d.batch_size
    model.eval()
    with torch.no_grad():
        x = torch.randn(eval_batch, *shape, device=device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        eval_ms = measure_latency(lambda: model(x), warmup=m.warmup, repeats=m.repeats, device=device)["median_ms"]
    return {
        "params": profile.params,
        "gflops": profile.gflops,
        "latency_ms": profile.latency_ms,
        "latency_eval_ms": eval_ms,
        "eval_batch": eval_batch,
        "peak_mem_mb": profile.peak_mem_mb,
        "unsupported_ops": profile.unsupported_ops,
        "timings_ms": profile.timings_ms,
    }


def figures_only(config: RunConfig, isa: str | None = None) -> RunConfig:
    """``config`` for training a finished run again for its figures and weights (nlbench reproduce, a backbone's
    weights restored): cost measurement and W&B change no figure (tests/test_reproducibility.py), so they are
    off; ``isa`` pins the kernels where given."""
    return config.replace(measure={"enabled": False}, wandb={"enabled": False},
                          **({"trainer": {"isa": isa}} if isa else {}))


def train_run(
    config: RunConfig,
    run_dir: str | Path,
    *,
    wandb_group: str | None = None,
    wandb_tags: tuple[str, ...] = (),
    progress: bool = True,
    callbacks: list | None = None,
    runs_dir: str | Path | None = None,
) -> dict:
    """Train and evaluate one run; returns its record (also in ``run_dir/record.json``). ``runs_dir``: where
    ``model.init_from: run:<run_id>`` is looked up (default: the folder holding ``run_dir``).

    Config problems (a bad data root, a checkpoint that does not fit) raise ConfigError before anything is
    written. A failure while training (NaN loss, out of memory, a data error) gives a record with
    ``status: failed``, its reason and step, and whatever metrics were logged until then.
    """
    run_dir = Path(run_dir)
    started, t0 = datetime.now(timezone.utc), time.perf_counter()
    if config.trainer.threads:
        torch.set_num_threads(config.trainer.threads)
    kernels = pin(config.trainer.isa)  # NotPinned (a ConfigError's kind) before a file is written
    datamodule, model, data_record, total_steps = _build(config, run_dir.parent if runs_dir is None else runs_dir)
    _start(run_dir, config)
    device = _device(config)
    record = _describe(config, datamodule, model, device, data_record, run_dir, kernels) | {
        "kernels": kernels, "numerics": NUMERICS_VERSION}
    logger = make_wandb_logger(config, run_dir, group=wandb_group, tags=wandb_tags)
    if logger is not None:
        _ = logger.experiment  # wandb.init now, before the training stream is seeded, whatever it draws
    try:
        module, trainer, throughput, curve = _trainer(config, datamodule, model, total_steps, run_dir, logger,
                                                      progress, callbacks)
        # The one consumer of the global generator left is dropout: its stream starts here, after everything
        # that may or may not run before training (W&B, measurement), so those cannot move it.
        pl.seed_everything(derive_seed(config.seed, "train") % 2**32, workers=True, verbose=False)
        record |= _fit_and_evaluate(config, datamodule, module, trainer, curve)
    except BaseException:
        # Ctrl-C, a pruned trial, a bug: the W&B run ends here (marked failed), or the next run of this
        # process (a sweep worker, a search) would log into it.
        if logger is not None:
            logger.experiment.finish(exit_code=1)
        raise
    record |= throughput.summary()
    record |= dict(
        wall_s=time.perf_counter() - t0,
        machine=machine_info(device) | _devices(config),
        started=started.isoformat(timespec="seconds"),
        finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        config=config.to_dict(),
    )
    if logger is not None:
        _close_tracking(logger, trainer, record)
    if trainer.is_global_zero:
        _write(run_dir, module, record)
    return record


# ------------------------------------------------------------------------------------ the steps


def _build(config: RunConfig, runs_dir: Path | None = None) -> tuple:
    """(datamodule, model, the record's data part, total steps): everything a config or data error can come
    from, before a file is written."""
    datamodule = build_datamodule(config)
    data_record = _describe_data(datamodule)
    model = build_model(config, datamodule.num_classes, runs_dir)
    return datamodule, model, data_record, _total_steps(config, datamodule)


def _start(run_dir: Path, config: RunConfig) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "record.json").unlink(missing_ok=True)
    atomic_write_text(run_dir / "config.yaml", config.to_yaml())


def _device(config: RunConfig) -> torch.device:
    accelerator = _accelerator(config)
    return torch.device("cuda" if accelerator in ("gpu", "cuda") else "cpu")


def _accelerator(config: RunConfig) -> str:
    accelerator = config.trainer.accelerator
    if accelerator == "auto":
        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    return accelerator


def _measure_once(model: torch.nn.Module, config: RunConfig, device: torch.device, run_dir: Path,
                  kernels: dict) -> dict:
    """``_measure``, once per distinct model on this machine: the seeds of a row share it (params and FLOPs are
    the same, latency and memory differ by timing noise), kept in ``<run_dir>/../.costs/``. Keyed by
    everything but the seed (the run's identity, the measurement's settings, the kernels, the machine, and the
    code: another commit may run other kernels, e.g. another dispatch choice, so it measures again)."""
    identity = {**config.result_dict(), "seed": None, "measure": config.measure.to_dict(), "kernels": kernels,
                "machine": machine_info(device), "torch": torch.__version__, "code": code_version()}
    key = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = run_dir.parent / COSTS / f"{key}.json"
    if path.is_file():
        return json.loads(path.read_text())
    costs = _measure(model, config, device)
    atomic_write_text(path, json.dumps(finite(costs)) + "\n")  # two workers measuring one model: the last wins
    return costs


def _describe(config: RunConfig, datamodule, model: torch.nn.Module, device: torch.device, data_record: dict,
              run_dir: Path, kernels: dict) -> dict:
    """The record's head: what ran (name, costs, what each non-local block attends over, the data) and which
    code."""
    costs = _measure_once(model, config, device, run_dir, kernels) if config.measure.enabled else {}
    input_shape = (3, config.data.frames, config.data.size, config.data.size)
    return {
        "run_id": config.run_id,
        "name": config.name or config.model.as_model_config(datamodule.num_classes).name,
        "status": "ok",
        "reason": None,
        "failed_step": None,
        **costs,
        "nonlocal_blocks": nonlocal_geometry(model, input_shape),
        **data_record,
        "code_version": code_version(),
        "packages": package_versions(),
    }


def _trainer(config: RunConfig, datamodule, model, total_steps: int, run_dir: Path, logger, progress: bool,
             callbacks) -> tuple:
    """(module, trainer, throughput, curve): the LightningModule and a Trainer set up by the recipe."""
    top5 = datamodule.num_classes > 10  # of 10 classes, top-5 is 100 % for any model that learnt anything
    module = VideoClassifier(model, config.recipe, total_steps, channels_last=config.trainer.channels_last,
                             ensemble=config.data.ensemble, top5=top5)
    throughput = TrainThroughput(config.data.batch_size, skip=min(3, total_steps // 2))
    curve = ValidationCurve(datamodule.val_groups())
    r, t = config.recipe, config.trainer
    # val_points > 0: validate every total_steps // val_points steps, counted across epochs.
    val_every = max(1, total_steps // r.val_points) if r.val_points else None
    trainer = pl.Trainer(
        accelerator=_accelerator(config),
        devices=t.devices,
        strategy=t.strategy,
        num_nodes=t.num_nodes,
        precision=t.precision,
        deterministic=t.deterministic,
        max_epochs=None if r.max_steps else r.epochs,
        max_steps=r.max_steps or -1,
        check_val_every_n_epoch=None if val_every else r.val_every_epochs,
        val_check_interval=val_every,
        # No sanity-check batches: the first of the val_points validations comes early enough to show a broken
        # val set, and in a sweep of small models the check is ~2 % of every run.
        num_sanity_val_steps=0,
        gradient_clip_val=r.grad_clip,
        logger=logger if logger is not None else False,
        callbacks=[throughput, curve, *(callbacks or [])],
        enable_checkpointing=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
        log_every_n_steps=max(1, min(10, total_steps // r.epochs)),
        default_root_dir=str(run_dir),
    )
    return module, trainer, throughput, curve


def _fit_and_evaluate(config: RunConfig, datamodule, module: VideoClassifier, trainer: pl.Trainer,
                      curve: ValidationCurve) -> dict:
    """Train, validate (the curve's last point), test: the record's metrics, or its failure."""
    r = config.recipe
    try:
        trainer.fit(module, datamodule=datamodule)
        if r.precise_bn_batches:
            from nlbench.training.precise_bn import recompute_bn_stats

            recompute_bn_stats(module.model, datamodule.train_dataloader(), r.precise_bn_batches, module.device)
        if r.precise_bn_batches or not curve.points or curve.points[-1]["step"] != trainer.global_step:
            val = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
            if not r.precise_bn_batches and "val/top1" in val:  # the curve ends at the final step
                curve.add(trainer, val["val/top1"], module)
        else:  # the last validation during training saw the final weights and BN statistics
            val = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        out = dict(
            val_top1=_round(val.get("val/top1")), val_top5=_round(val.get("val/top5")),
            steps=trainer.global_step, epochs=trainer.current_epoch, curve=curve.points,
        )
        return out | _test(datamodule, module, trainer)
    except NonFiniteLossError as e:
        return dict(status="failed", reason=str(e), failed_step=e.step)
    except torch.OutOfMemoryError as e:
        return dict(status="failed", reason=f"out of memory: {str(e).splitlines()[0]}", failed_step=trainer.global_step)
    except (RuntimeError, OSError, ValueError) as e:
        return dict(
            status="failed", reason=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
            failed_step=trainer.global_step, traceback=traceback.format_exc(limit=8),
        )


def _test(datamodule, module: VideoClassifier, trainer: pl.Trainer) -> dict:
    """The multi-view test (every view of a video, scores ensembled per video): top-1 / top-5, per class and
    (synthetic data) per family. A trained run's test and ``evaluate_run`` both come here."""
    test = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    out = dict(top1=_round(test.get("test/top1")), top5=_round(test.get("test/top5")))
    if module.test_predictions is not None and trainer.is_global_zero:
        scores, labels, videos = module.test_predictions
        per_class = out["per_class"] = _per_class(scores, labels, datamodule.class_names)
        out["mean_class_top1"] = round(statistics.fmean(per_class.values()), 4) if per_class else None
        families = datamodule.test_families()
        if families is not None:
            out["per_family"] = _per_family(scores, labels, families[videos.numpy()])
        groups = datamodule.test_groups()
        if groups is not None:
            out |= _group_accuracy(scores, labels, groups[videos.numpy()],
                                   None if families is None else families[videos.numpy()])
    return out


def load_weights(model: torch.nn.Module, weights: str | Path) -> str:
    """Load ``weights`` (an nlbench ``model.pt``, or the folder holding one) into ``model``, every tensor
    (strict: nothing missing, nothing left over, no shape changed); returns the file's sha256. ConfigError,
    one line naming the file and the first tensor, otherwise."""
    from nlbench.models.convert import sha256

    path = Path(weights)
    path = path / WEIGHTS if path.is_dir() else path
    if not path.is_file():
        raise ConfigError(f"--weights {str(weights)!r}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's to fix, in one line
        raise ConfigError(f"{path}: not a state dict of tensors ({(str(e).splitlines() or [type(e).__name__])[0]})") from None
    if not isinstance(state, dict):
        raise ConfigError(f"{path}: expected a state dict, got {type(state).__name__}")
    target = model.state_dict()
    problems = [f"{k} is missing" for k in target if k not in state]
    problems += [f"{k} is not in the model" for k in state if k not in target]
    problems += [f"{k} is {tuple(state[k].shape)}, the model's {tuple(target[k].shape)}" for k in target
                 if k in state and state[k].shape != target[k].shape]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        hint = "; a peer's checkpoint? nlbench convert it first" if not set(state) & set(target) else ""
        raise ConfigError(f"{path}: does not fit the config's model: {problems[0]}{more}{hint}")
    model.load_state_dict(state)
    return sha256(path)


def evaluate_run(config: RunConfig, weights: str | Path, out_dir: str | Path | None = None, *,
                 split: str | None = None, progress: bool = True, callbacks: list | None = None) -> dict:
    """Test ``weights`` as ``config``'s run would be tested after training, and measure the model's cost: the
    same data module, LightningModule, Trainer, multi-view test and measurements as ``train_run``, without
    the training. ``split``: val or test (default: test where the data has one, else val). The record (the
    fields of a trained run's that apply, plus ``weights``, ``weights_sha256`` and ``split``) goes to
    ``out_dir/record.json`` (default ``results/eval/<run_id>-<weights sha256[:8]>``)."""
    started, t0 = datetime.now(timezone.utc), time.perf_counter()
    if config.trainer.threads:
        torch.set_num_threads(config.trainer.threads)
    kernels = pin(config.trainer.isa)  # the kernels the run was made with (NotPinned: a fresh process runs it)
    datamodule = build_datamodule(config, test_split=split)
    data_record = _describe_data(datamodule, "test")
    model = config.model.as_model_config(datamodule.num_classes).build(seed=config.seed)
    digest = load_weights(model, weights)
    out_dir = Path(out_dir) if out_dir else Path("results/eval") / f"{config.run_id}-{digest[:8]}"
    device = _device(config)
    record = _describe(config, datamodule, model, device, data_record, out_dir, kernels) | {
        "kernels": kernels, "numerics": NUMERICS_VERSION}
    module, trainer, _, _ = _trainer(config, datamodule, model, 1, out_dir, None, progress, callbacks)
    try:
        record |= _test(datamodule, module, trainer)
    except (RuntimeError, OSError, ValueError) as e:
        record |= dict(status="failed", reason=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    record |= dict(
        weights=str(weights), weights_sha256=digest,
        split=split or getattr(datamodule, "test_split", "test"),
        wall_s=time.perf_counter() - t0,
        machine=machine_info(device) | _devices(config),
        started=started.isoformat(timespec="seconds"),
        finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        config=config.to_dict(),
        out=str(out_dir),
    )
    if trainer.is_global_zero:
        write_record(out_dir, record)
    return record


def _close_tracking(logger, trainer: pl.Trainer, record: dict) -> None:
    logger.experiment.summary.update(run_summary(record))
    logger.finalize("success" if record["status"] == "ok" else "failed")
    record["wandb_dir"] = str(Path(logger.experiment.dir).parent) if trainer.is_global_zero else None
    if trainer.is_global_zero:
        logger.experiment.finish(exit_code=0 if record["status"] == "ok" else 1)


def _write(run_dir: Path, module: VideoClassifier, record: dict) -> None:
    """The weights, then the record: written last, atomically (a run dir with a record is a finished run)."""
    if record["status"] == "ok":
        with atomic_file(run_dir / WEIGHTS) as f:  # fsynced: a power cut leaves no empty model.pt to trust
            torch.save(module.model.state_dict(), f)
    write_record(run_dir, record)


def _devices(config: RunConfig) -> dict:
    t = config.trainer
    return {"devices": str(t.devices), "num_nodes": str(t.num_nodes), "strategy": t.strategy, "precision": t.precision}


def _per_class(scores: torch.Tensor, labels: torch.Tensor, names) -> dict[str, float]:
    hit = scores.argmax(1).eq(labels).double()
    return {name: round(float(hit[labels == k].mean() * 100), 4) for k, name in enumerate(names) if (labels == k).any()}


def _per_family(scores: torch.Tensor, labels: torch.Tensor, families) -> dict[str, float]:
    """Test top-1 within each family (the synthetic benchmark's cue layouts), families in first-seen order."""
    hit = scores.argmax(1).eq(labels).double().numpy()
    return {f: round(float(hit[families == f].mean() * 100), 4) for f in dict.fromkeys(families.tolist())}


def _group_accuracy(scores: torch.Tensor, labels: torch.Tensor, groups, families) -> dict:
    """The share of groups whose every clip is right (the synthetic quadruples: an additive model gets none
    of a temporal family's), overall and within each family (a group's clips share one)."""
    right, index = all_right(scores.argmax(1).eq(labels).numpy(), groups)
    out = {"group_top1": round(float(right.mean() * 100), 4)}
    if families is not None:
        family = np.empty(len(right), dtype=object)
        family[index] = families
        out["per_family_group"] = {f: round(float(right[family == f].mean() * 100), 4)
                                   for f in dict.fromkeys(family.tolist())}
    return out


def _round(value: float | None) -> float | None:
    # Lightning logs metrics as float32: 31.4 comes back as 31.399999618530273.
    return None if value is None else round(float(value), 4)


__all__ = ["build_datamodule", "build_model", "evaluate_run", "figures_only", "load_weights",
           "read_record", "train_run"]
