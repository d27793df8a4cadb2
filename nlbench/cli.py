"""The `nlbench` command line: a thin layer over the library; every subcommand is one function call."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from nlbench import __version__
from nlbench.ops.instantiations import REGISTRY as INSTANTIATIONS


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shape {text!r} is not of the form TxHxW (e.g. 4x28x28)")
    if not 1 <= len(dims) <= 3 or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"--shape {text!r}: expected 1 to 3 positive sizes, e.g. 4x28x28")
    return dims


def _print_profile(profile, title: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps(profile.to_dict(), indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("params", f"{profile.params / 1e6:.3f} M ({profile.params:,})")
    table.add_row("GFLOPs (multiply-adds, one input)", f"{profile.gflops:.3f}")
    for name, ms in profile.timings_ms.items():
        table.add_row(f"latency {name}", f"{ms:.1f} ms")
    if profile.peak_mem_mb is not None:
        table.add_row("peak memory, training step", f"{profile.peak_mem_mb:.1f} MiB")
    table.add_row("ops not counted", ", ".join(f"{k} x{v}" for k, v in profile.unsupported_ops.items()) or "none")
    table.add_row("machine", f"{profile.machine.get('cpu')} / {profile.machine.get('device')}")
    Console().print(table)


def _knob_values(args) -> dict:
    """The non-local knobs given on the command line (checked: one line naming the flag), and the preset."""
    from nlbench.ops import PRESETS
    from nlbench.ops.knobs import KNOBS

    if args.nl_preset is not None and args.nl_preset not in PRESETS:
        raise ValueError(f"--nl-preset {args.nl_preset!r} is not allowed; expected one of {tuple(PRESETS)}")
    return {k.name: k.from_text(getattr(args, k.name)) for k in KNOBS if getattr(args, k.name) is not None}


def cmd_block(args) -> None:
    from nlbench.io import load_yaml
    from nlbench.measure import profile_module
    from nlbench.models import NonLocalKnobs
    from nlbench.ops.registry import DEFAULT_BLOCK, build_block

    block_args = load_yaml(args.block_args) if args.block_args else {}
    if not isinstance(block_args, dict):
        raise ValueError(f"--block-args {args.block_args!r} is not a mapping; expected YAML such as '{{ratio: 0.25}}'")
    if args.block == DEFAULT_BLOCK:
        if block_args:
            raise ValueError("--block-args is for other blocks: the non-local block's arguments are its knob flags")
        # Knobs not given take the preset's value (--nl-preset; default: the paper's, i.e. the block's defaults).
        block = NonLocalKnobs(**_knob_values(args)).resolved(args.nl_preset or "paper").block(args.channels)
    else:
        given = _knob_values(args)
        if given or args.nl_preset:
            raise ValueError(f"--{next(iter(given), 'nl-preset').replace('_', '-')} is a non-local knob; with "
                             f"--block {args.block} give the block's arguments with --block-args")
        block = build_block(args.block, args.channels, block_args)
    profile = profile_module(
        block, (args.channels, *args.shape), train_batch=args.batch, device=args.device, repeats=args.repeats,
        timing=not args.counts_only,
    )
    _print_profile(profile, f"{args.block} ({type(block).__name__}): {block.extra_repr()}", args.json)


def cmd_blocks(args) -> None:
    from nlbench.ops.registry import describe, registered

    entries = [describe(name) for name in registered()]
    if args.json:
        print(json.dumps(entries, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="blocks (model.block; or package.module:Name for your own)")
    for column in ("name", "class", "arguments (model.block_args) and defaults", "contract members", "what it is"):
        table.add_column(column)
    for e in entries:
        args_text = ("the non-local knobs (model keys: nlbench profile --help)" if e["name"] == "nonlocal"
                     else ", ".join(f"{k}={v!r}" for k, v in e["args"].items()) or "-")
        table.add_row(e["name"], e["class"], args_text, ", ".join(e["members"]), e["doc"])
    Console().print(table)


def cmd_profile(args) -> None:
    from nlbench.measure import profile_module
    from nlbench.models import make_config

    config = make_config(**_model_values(args), nl_preset=args.nl_preset, **_knob_values(args))
    model = config.build()
    profile = profile_module(
        model, (3, args.frames, args.size, args.size), train_batch=args.batch, device=args.device,
        repeats=args.repeats, channels_last=args.channels_last, timing=not args.counts_only,
    )
    _print_profile(profile, f"{config.name} at {args.frames}x{args.size}x{args.size}", args.json)
    if not args.json:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="per part")
        for column in ("part", "params (M)", "GFLOPs"):
            table.add_column(column, justify="left" if column == "part" else "right")
        for part in profile.breakdown:
            table.add_row(part["name"], f"{part['params'] / 1e6:.3f}", f"{part['gflops']:.3f}")
        Console().print(table)


def cmd_zoo(args) -> None:
    from nlbench.report.model_zoo import run, run_peers

    if args.peers_only:
        run_peers(args.out, args.peers_csv)
    else:
        run(args.out, args.csv, args.repeats, args.peers_csv)


def _split_sizes(text: str) -> tuple[int, int, int]:
    try:
        sizes = tuple(int(v) for v in text.split(","))
    except ValueError:
        sizes = ()
    if len(sizes) != 3:
        raise argparse.ArgumentTypeError(f"--split-sizes {text!r} is not of the form TRAIN,VAL,TEST (e.g. 5000,500,500)")
    return sizes  # type: ignore[return-value]


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of ints (e.g. 0,2)")


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive int")
    return int(text)


def _range(pair) -> str:
    return "-" if pair is None else (f"{pair[0]}" if pair[0] == pair[1] else f"{pair[0]}-{pair[1]}")


def cmd_data_export(args) -> None:
    from nlbench.data import SyntheticConfig, export_synthetic

    sizes = {"split_sizes": args.split_sizes} if args.split_sizes else {}
    config = SyntheticConfig(frames=args.frames, size=args.size, seed=args.seed, **sizes)
    summary = export_synthetic(args.dir, config, fps=args.fps, workers=args.workers)
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    videos = ", ".join(f"{k} {v}" for k, v in summary["videos"].items())
    print(
        f"wrote {videos} videos ({summary['classes']} classes, "
        f"{summary['frames']}x{summary['size']}x{summary['size']}, "
        f"{summary['codec']} at {summary['fps']} fps, {summary['bytes'] / 2**20:.1f} MiB) to {summary['root']} "
        f"in {summary['seconds']:.1f} s"
    )


def cmd_data_scan(args) -> None:
    import time

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from nlbench.data import scan_root

    # The bar goes to stderr (stdout stays a clean table or JSON) and only when stderr is a terminal.
    with Progress(TextColumn("probing {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True, disable=args.json or not sys.stderr.isatty()) as bar:
        tasks: dict[str, tuple] = {}

        def progress(split: str, done: int, total: int) -> None:
            if split not in tasks:
                tasks[split] = (bar.add_task(split, total=total, rate=""), time.perf_counter(), done)
            task, t0, cached = tasks[split]
            rate = (done - cached) / max(time.perf_counter() - t0, 1e-9)
            bar.update(task, completed=done, rate=f"{rate:.0f} files/s" if done > cached else "cached")

        report = scan_root(args.root, workers=args.workers, processes=args.workers > 1,
                           cache_dir=None if args.no_cache else "auto", progress=progress)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return
    from rich.table import Table

    table = Table(title=f"{report.root}: {len(report.class_names)} classes")
    for column in ("split", "videos", "classes", "unreadable", "seconds", "W x H", "fps", "codecs"):
        table.add_column(column, justify="left" if column in ("split", "codecs") else "right")
    for s in report.splits:
        size = f"{_range(s.width)}x{_range(s.height)}" + (f", {s.portrait} portrait" if s.portrait else "")
        codecs = ", ".join(f"{k} {v}" for k, v in s.codecs.items())
        table.add_row(s.split, str(s.videos), str(s.classes), str(len(s.unreadable)), _range(s.duration_s),
                      size, _range(s.fps), codecs)
    Console().print(table)
    bad = [(s.split, u) for s in report.splits for u in s.unreadable]
    if bad:
        # A plain list, not a table: a path is what a user needs from it, and a table cuts it to the width.
        print(f"unreadable videos (left out of training and evaluation), relative to {report.root}:")
        for split, u in bad:
            print(f"  {split}  {u['path']}  ({u['reason']})")


def cmd_data_bench(args) -> None:
    from nlbench.data import SyntheticConfig
    from nlbench.data.bench import bench_loader, stage_times

    sampling = transform = None
    if args.config:
        from nlbench.data.sampling import ClipSampling
        from nlbench.training.config import RunConfig

        d = RunConfig.load(args.config).data
        sampling = ClipSampling(d.frames, d.sampling_rate, d.num_clips, d.short_clip)
        transform = d.transform()
    results = bench_loader(
        args.root,
        synthetic=SyntheticConfig(frames=args.frames, size=args.size),
        workers=args.workers,
        batch_size=args.batch_size,
        batches=args.batches,
        sampling=sampling,
        transform=transform,
    )
    stages = stage_times(args.root, sampling, transform, clips=args.clips) if args.root else None
    if args.json:
        print(json.dumps({"loader": results, "stages": stages}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="training loader throughput")
    for column in ("source", "workers", "batch", "clip (C, T, H, W)", "clips/s", "warm-up s"):
        table.add_column(column, justify="left" if column == "source" else "right")
    for r in results:
        table.add_row(r["source"], str(r["workers"]), str(r["batch_size"]), "x".join(map(str, r["clip_shape"] or ())),
                      f"{r['clips_per_s']:.1f}", f"{r['warmup_s']:.2f}")
    console = Console()
    console.print(table)
    if stages:
        from nlbench.data.video import STAGES

        table = Table(title=f"CPU ms per training clip ({stages['clip']}, {stages['clips']} clips, one process)")
        for column in (*STAGES, "transform", "total", "clips/s a core"):
            table.add_column(column, justify="right")
        table.add_row(*(f"{stages[k]:.3f}" for k in (*STAGES, "transform")), f"{stages['total_ms']:.3f}",
                      f"{stages['clips_per_s']:.0f}")
        console.print(table)


def _add_data_parser(sub) -> None:
    data = sub.add_parser("data", help="the synthetic benchmark and video folders").add_subparsers(
        dest="data_command", required=True
    )
    p = data.add_parser("export-synthetic", help="write the synthetic benchmark as H.264 videos, Kinetics layout")
    p.add_argument("dir", help="new or empty output directory")
    p.add_argument("--split-sizes", type=_split_sizes, default=None,
                   help="TRAIN,VAL,TEST clip counts, multiples of 8 (default 8000,1000,1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", type=int, default=8, help="frames per clip (even)")
    p.add_argument("--size", type=int, default=32, help="frame height and width (even)")
    p.add_argument("--fps", type=int, default=8)
    p.add_argument("--workers", type=int, default=1, help="encoding processes")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_data_export)

    p = data.add_parser("scan", help="per split: videos, classes, unreadable files, duration and resolution ranges")
    p.add_argument("root", help="ROOT/{train,val,test}/<class>/<video> or ROOT/{train,val,test}.csv")
    p.add_argument("--workers", type=_positive, default=max(1, os.cpu_count() or 1),
                   help="probing processes (default: one a core; 1: a thread in this process)")
    p.add_argument("--no-cache", action="store_true",
                   help="probe every file again, without reading or writing the probe cache (~/.cache/nlbench)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.set_defaults(func=cmd_data_scan)

    p = data.add_parser("bench", help="training loader throughput (clips/s) of a video root or the in-memory set")
    p.add_argument("root", nargs="?", default=None, help="video root; omitted: the synthetic set in memory")
    p.add_argument("--workers", type=_ints, default=(0, 2), help="worker counts to time, e.g. 0,2")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--batches", type=int, default=20, help="timed batches after 2 warm-up ones")
    p.add_argument("--frames", type=int, default=8, help="in-memory set: frames per clip")
    p.add_argument("--size", type=int, default=32, help="in-memory set: frame size")
    p.add_argument("--config", default=None, help="video root: sample and transform as this run config's data section")
    p.add_argument("--clips", type=_positive, default=200, help="video root: clips timed stage by stage")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_data_bench)


# Old spellings of generated flags, kept working.
_KNOB_ALIASES = {"block": {"subsample_order": ("--order",)}, "profile": {"mode": ("--nl-mode",)}}


def _model_fields() -> list:
    """ModelConfig's fields that a command line sets (the non-local knobs and their preset have their own)."""
    import dataclasses

    from nlbench.models import ModelConfig

    return [f for f in dataclasses.fields(ModelConfig) if f.name not in ("nonlocal_knobs", "nl_preset")]


def _add_model_args(p: argparse.ArgumentParser) -> None:
    """One flag per ModelConfig field (the model's one declaration: name, default, and its field's help);
    values are read as YAML (5, small, [[res4, 4]], true) and checked by ModelConfig."""
    import dataclasses

    group = p.add_argument_group("model (ModelConfig's fields; not given: its default)")
    for f in _model_fields():
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        group.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=None, metavar="VALUE",
                           help=f"{f.metadata['help']} (default: {default})")


def _model_values(args) -> dict:
    from nlbench.io import load_yaml

    return {f.name: load_yaml(getattr(args, f.name)) for f in _model_fields() if getattr(args, f.name) is not None}


def _add_knob_args(p: argparse.ArgumentParser, command: str) -> None:
    """One flag per non-local knob (nlbench.ops.knobs, the one declaration), and --nl-preset. Values are
    parsed after argparse (``_knob_values``) so that a bad one is a single line naming the flag."""
    from nlbench.ops import PRESETS
    from nlbench.ops.knobs import KNOBS

    group = p.add_argument_group("non-local block knobs (not given: the preset's value, else the default)")
    group.add_argument("--nl-preset", default=None, metavar="NAME",
                       help=f"fill the knobs not given from a peer's preset: one of {', '.join(PRESETS)}")
    for knob in KNOBS:
        aliases = _KNOB_ALIASES.get(command, {}).get(knob.name, ())
        default = "C/2" if knob.name == "inner_channels" else knob.default
        # Boolean knobs also work as plain switches (--scale, --subsample).
        switch = dict(nargs="?", const="true") if knob.name in ("scale", "subsample", "W_z_bias") else {}
        group.add_argument(knob.flag, *aliases, dest=knob.name, default=None, metavar="VALUE", **switch,
                           help=f"{knob.help}; {knob.expected} (block default: {default})")
    group.add_argument("--no-subsample", dest="subsample", action="store_const", const="false",
                       help="same as --subsample false")


def _add_measurement_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--counts-only", action="store_true",
                   help="params and GFLOPs only, no timing or memory (seconds at paper scale)")
    p.add_argument("--batch", type=int, default=8, help="training batch for the batched timings")
    p.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up (median reported)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")


def _print_record(record: dict, folder: Path, as_json: bool) -> None:
    """A run's record after ``nlbench train`` / ``eval``: all of it but the config as JSON, else its summary
    fields (``nlbench.record.SUMMARY``) that have a value, and where the record is."""
    from nlbench.record import SUMMARY

    if as_json:
        print(json.dumps({k: v for k, v in record.items() if k != "config"}, indent=2, default=str))
        return
    for key in SUMMARY:
        value = record.get(key)
        if value is not None:
            print(f"{key:>18}  {value:.4g}" if isinstance(value, float) else f"{key:>18}  {value}")
    print(f"{'record':>18}  {folder / 'record.json'}")


def cmd_train(args) -> int:
    from nlbench.training import RunConfig, train_run

    config = RunConfig.load(args.config, args.overrides)
    run_dir = Path(args.out) if args.out else Path("results/runs") / config.run_id
    record = train_run(config, run_dir, progress=not args.json)
    _print_record(record, run_dir, args.json)
    if record["status"] != "ok":
        print(f"nlbench: error: run {record['run_id']} failed: {record['reason']}", file=sys.stderr)
        return 1
    return 0


def cmd_reproduce(args) -> int:
    import tempfile

    from nlbench.training import RunConfig, read_record, train_run
    from nlbench.training.config import init_run
    from nlbench.record import WEIGHTS
    from nlbench.training.run import figures_only

    run = Path(args.run_dir)
    record = read_record(run)
    if record is None or not (run / "config.yaml").is_file():
        raise ValueError(f"{run}: not a finished run (no record.json and config.yaml)")
    config = RunConfig.load(run / "config.yaml")
    isa = args.isa or config.trainer.isa or (record.get("kernels") or {}).get("pin")
    config = figures_only(config, isa)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix=f"reproduce-{config.run_id}-"))
    # A fine-tuned run (model.init_from: run:<id>) starts from the backbone beside the run. Trained weights are
    # not committed (.gitignore): on a fresh clone the backbone is re-run from its own committed config first,
    # and is itself compared with its record.
    runs_dir, verdicts = run.parent, []
    backbone = init_run(config.model.init_from or "")
    if backbone and not (run.parent / backbone / WEIGHTS).is_file():
        stored = read_record(run.parent / backbone)
        if stored is None or not (run.parent / backbone / "config.yaml").is_file():
            raise ValueError(f"{run}: starts from run {backbone}, which is not beside it in {run.parent}")
        runs_dir = out / "backbone"
        again = RunConfig.load(run.parent / backbone / "config.yaml")
        backbone_isa = args.isa or again.trainer.isa or (stored.get("kernels") or {}).get("pin")
        again = figures_only(again, backbone_isa)
        verdicts.append(_say_reproduced(stored, train_run(again, runs_dir / backbone, progress=False), again,
                                        backbone_isa, runs_dir / backbone, "backbone "))
    verdicts.append(_say_reproduced(record, train_run(config, out, progress=False, runs_dir=runs_dir), config, isa,
                                    out))
    return 0 if all(v == "reproduced" for v in verdicts) else 1


def _say_reproduced(record: dict, rerun: dict, config, isa: str | None, out: Path, what: str = "") -> str:
    from nlbench.numerics import compare

    verdict, lines = compare(record, rerun)
    print(f"{what}{config.run_id}: {verdict} (re-run in {out}, kernels pinned to {isa or 'nothing'})")
    for line in lines:
        print(f"  {line}")
    return verdict


def cmd_overhead(args) -> None:
    from nlbench.io import atomic_write_text
    from nlbench.measure import machine_info
    from nlbench.training import RunConfig
    from nlbench.training.overhead import measure_overhead

    config = RunConfig.load(args.config, args.overrides)
    result = measure_overhead(config, steps=args.steps, rounds=args.rounds)
    result["machine"] = machine_info(torch_device("cpu"))
    for kind, rate in result["clips_per_s"].items():
        extra = f"  overhead {result['overhead_pct'][kind]:+.1f}%" if kind in result["overhead_pct"] else ""
        print(f"{kind:>16}  {rate:8.1f} clips/s{extra}")
    if args.out:
        atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")


def torch_device(name: str):
    import torch

    return torch.device(name)


def _add_train_parser(sub) -> None:
    from nlbench.numerics import LEVELS as ISA_LEVELS
    from nlbench.training.config import config_keys

    keys = "config keys (KEY=VALUE overrides; the values are YAML):\n  " + "\n  ".join(config_keys())
    p = sub.add_parser("train", help="train and evaluate one run from a config file; prints its record",
                       epilog=keys, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="run config YAML (see configs/)")
    p.add_argument("overrides", nargs="*", help="KEY=VALUE changes, e.g. model.nl_blocks=5 recipe.lr=0.1")
    p.add_argument("--out", default=None, help="run directory (default: results/runs/<run_id>)")
    p.add_argument("--json", action="store_true", help="print the record as JSON")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("reproduce", help="train a finished run again from its config.yaml and compare its figures "
                                         "with its record (exit 1 unless identical); other kernels are said so")
    p.add_argument("run_dir", help="a run directory, e.g. results/tiny/runs/<run_id>")
    p.add_argument("--isa", choices=tuple(ISA_LEVELS), default=None,
                   help="pin the kernels to this level (default: the config's trainer.isa, else the record's pin; "
                        "the committed tiny records without either were made with avx2)")
    p.add_argument("--out", default=None, help="run directory of the re-run (default: a new temporary one)")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("overhead", help="training clips/s under Lightning vs a bare PyTorch loop, same batches")
    p.add_argument("config", nargs="?", default="configs/tiny.yaml")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default="results/overhead.json")
    p.set_defaults(func=cmd_overhead)


def cmd_convert(args) -> int:
    from nlbench.io import load_yaml
    from nlbench.models.convert import FORMATS, convert, run_config, write
    from nlbench.training import RunConfig

    if args.fmt not in FORMATS:
        raise ValueError(f"--from {args.fmt!r} is not allowed; expected one of {tuple(FORMATS)}")
    expected = text = None
    if args.config:
        # Only the model section is checked here: a converted run's config leaves data.root to `eval --data`.
        text = Path(args.config).read_text() if Path(args.config).is_file() else None
        data = (load_yaml(text) or {}).get("data") if text else None
        stand_in = ["data.root=ROOT"] if isinstance(data, dict) and not data.get("root") else []
        expected = RunConfig.load(args.config, stand_in).model.as_model_config(num_classes=1)
    converted = convert(args.src, args.fmt, instantiation=args.instantiation, expected=expected,
                        trust_pickle=args.trust_pickle)
    if text is None:
        config = run_config(converted, args.fmt, args.frames)
        # Checked as a run config (with a stand-in root) before anything is written.
        RunConfig.from_dict({**config, "data": {**config["data"], "root": "ROOT"}}, source="converted config")
    out = write(converted, args.fmt, args.src, args.out, config=config if text is None else text)
    print(f"{converted.config.name}: {len(converted.state)} tensors from {args.src} ({args.fmt}) -> {out / 'model.pt'}, "
          f"{out / 'config.yaml'}" + (f"; frozen BN as affine: {len(converted.frozen_bn)} layers" if converted.frozen_bn else ""))
    return 0


def cmd_eval(args) -> int:
    from nlbench.training import RunConfig
    from nlbench.training.run import evaluate_run

    overrides = list(args.overrides) + ([f"data.root={args.data}"] if args.data else [])
    config = RunConfig.load(args.config, overrides)
    record = evaluate_run(config, args.weights, args.out, split=args.split, progress=not args.json)
    _print_record(record, Path(record["out"]), args.json)
    return 0 if record["status"] == "ok" else 1


def _add_weights_parsers(sub) -> None:
    from nlbench.models.convert import FORMATS

    p = sub.add_parser("convert", help="a released checkpoint (mmaction2, pytorchvideo, PySlowFast, the authors' Caffe2) "
                                       "-> an nlbench model.pt and the run config it belongs to")
    p.add_argument("src", help="the peer's checkpoint (.pth, .pyth, .pkl)")
    p.add_argument("--from", dest="fmt", required=True, metavar="FORMAT", help=f"one of {', '.join(FORMATS)}")
    p.add_argument("--out", required=True, help="folder for model.pt, config.yaml and conversion.json")
    p.add_argument("--config", default=None,
                   help="a run config the checkpoint must fit (its model section); written as the converted run's config")
    # The instantiations without w_f: a checkpoint's tensors cannot tell them apart (concatenation's w_f can).
    p.add_argument("--instantiation", default=None, choices=tuple(i.name for i in INSTANTIATIONS if not i.w_f),
                   help="the non-local blocks' f where the tensors and the file do not say (dot product and embedded "
                        "Gaussian have the same tensors)")
    p.add_argument("--frames", type=_positive, default=None,
                   help="clip length of the written config (default: the peer's; e.g. 128 for the 128-frame models)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="read a checkpoint that keeps Python objects besides tensors with Python's pickle (it can "
                        "run code: only for files you trust)")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("eval", help="evaluate weights with a run config's multi-view test and measure the model's cost; "
                                    "writes a record like a trained run's")
    p.add_argument("config", help="run config YAML (a trained run's config.yaml, or convert's)")
    p.add_argument("overrides", nargs="*", help="KEY=VALUE changes, e.g. data.num_clips=10 data.eval_batch_size=4")
    p.add_argument("--weights", required=True, help="model.pt of an nlbench run or of nlbench convert (or its folder)")
    p.add_argument("--data", default=None, help="data root (sets data.root)")
    p.add_argument("--split", default=None, choices=("val", "test"),
                   help="the split the multi-view test reads (default: test where the data has one, else val)")
    p.add_argument("--out", default=None, help="folder of the record (default results/eval/<run_id>-<weights sha256[:8]>)")
    p.add_argument("--json", action="store_true", help="print the record as JSON")
    p.set_defaults(func=cmd_eval)


def cmd_sweep(args) -> int:
    if args.wandb_sweep:  # W&B's controller runs the grid instead: write the sweep files, train nothing
        from nlbench.sweep.wandb_sweep import export_sweeps

        for path in export_sweeps(args.tables, args.profile, args.wandb_sweep, args.data):
            print(f"wrote {path}: wandb sweep {path}; then on each node: wandb agent ENTITY/PROJECT/SWEEP_ID")
        return 0
    from nlbench.sweep.runner import open_storage, prepare, run_sweeps, timing
    from nlbench.sweep.spec import without_profiles

    args.tables = without_profiles(args.tables)
    if not args.tables:
        raise ValueError("no table files given (e.g. ablations/2a_instantiation.yaml)")
    # Every table, the profile, the data, --grace and the storage are checked before anything is written.
    for t in args.tables:
        prepare(t, args.profile, args.storage, args.data, args.results)
    timing(args.grace)
    if args.storage:
        open_storage(args.storage)
    if args.search:
        from nlbench.sweep.search import run_search

        if len(args.tables) != 1:
            raise ValueError("--search tunes one row of one table; give one table file")
        frame = run_search(args.tables[0], args.row, profile=args.profile, method=args.search, trials=args.trials,
                           storage=args.storage, data=args.data, results_dir=args.results, progress=not args.quiet)
        print(frame.to_string(index=False))
        return 0
    try:
        outcome = run_sweeps(args.tables, args.profile, args.storage, args.workers, args.data,
                             progress=not args.quiet, results_dir=args.results, grace_s=args.grace)
    except KeyboardInterrupt:
        print("nlbench: interrupted; run the same command again to resume (finished runs are kept)", file=sys.stderr)
        return 130
    failed = 0
    if "kinetics" in outcome.extra:
        k = outcome.extra["kinetics"]
        where = Path(args.results) / args.profile / "kinetics"
        print(f"kinetics: {k['classes']} classes; " + "; ".join(
            f"{s} {k[s]['found']}/{k[s]['annotated']} videos found, {k[s]['missing']} missing, {k[s]['extra']} not "
            f"annotated" for s in ("train", "val")) + f" (lists and the label index in {where}/)")
    for sweep in outcome.sweeps:
        frame = outcome.frames[sweep.name]
        bad = int((frame["status"] != "ok").sum()) if len(frame) else 0
        failed += bad
        print(f"{sweep.name}: {len(frame)}/{len(sweep.cells)} runs finished, {bad} failed -> "
              f"{Path(args.results) / args.profile / (sweep.table.name + '.csv')}")
    print(f"sweep: {outcome.summary()}")
    return 1 if failed else 0


def _add_sweep_parser(sub) -> None:
    p = sub.add_parser("sweep", help="run the ablation tables (ablations/*.yaml): rows x seeds, resumable -> "
                                     "results/<profile>/<table>.csv")
    p.add_argument("tables", nargs="+", help="table files, e.g. ablations/2a_instantiation.yaml or ablations/*.yaml")
    p.add_argument("--profile", default="tiny", help="smoke, tiny (default) or paper (ablations/profiles.yaml)")
    p.add_argument("--storage", default=None,
                   help="optuna storage URL (default sqlite:///results/<profile>/sweeps.db); a PostgreSQL URL "
                        "(postgresql+psycopg://user:password@host/db) shared by several machines spreads a sweep "
                        "over them (see README.md)")
    p.add_argument("--workers", type=int, default=1,
                   help="runs in parallel (processes), one pool over every table given")
    p.add_argument("--grace", type=int, default=None,
                   help="seconds without a heartbeat after which a run's process is taken for dead and its cell "
                        "redone (default 60, or $NLBENCH_GRACE_S)")
    p.add_argument("--data", default=None, help="data set root for profiles that need one (paper)")
    p.add_argument("--results", default="results", help="results folder (default results/)")
    p.add_argument("--search", choices=("random", "tpe"), default=None,
                   help="instead of the grid: tune recipe.lr and recipe.weight_decay of one row (--row)")
    p.add_argument("--row", default=None, help="with --search: the row to tune (default: the baseline)")
    p.add_argument("--trials", type=int, default=10, help="with --search: number of trials")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--wandb-sweep", metavar="DIR", default=None,
                   help="train nothing: write one W&B sweep config per table, DIR/<table>.yaml, for `wandb sweep`")
    p.set_defaults(func=cmd_sweep)


def cmd_agent_run(args) -> int:
    from nlbench.sweep.agent import main as agent_main

    return agent_main(args)


def _add_agent_parser(sub) -> None:
    p = sub.add_parser("agent-run", help="one cell of a table, as a W&B sweep agent launches it (see "
                                         "`nlbench sweep --wandb-sweep`); exit 1 when the run fails")
    p.add_argument("--table", required=True, help="table name (2a_instantiation) or its YAML path")
    p.add_argument("--profile", required=True, help="smoke, tiny or paper (ablations/profiles.yaml)")
    p.add_argument("--row", required=True, help="row label, e.g. 'Embedded Gaussian'")
    p.add_argument("--seed", required=True, help="one of the profile's seeds")
    p.add_argument("--data", default=None, help="data set root for profiles that need one (paper)")
    p.add_argument("--results", default="results", help="results folder (default results/)")
    p.add_argument("--ablations", default="ablations", help="where table names are looked up (default ablations/)")
    p.set_defaults(func=cmd_agent_run)


def cmd_report(args) -> None:
    from nlbench.report.build import build_reports

    build_reports(args.profile, args.results, args.out, args.ablations, measure=not args.skip_measure,
                  attention=not args.no_attention, from_wandb=args.from_wandb, data=args.data,
                  log_wandb=not args.no_wandb)


def _add_report_parser(sub) -> None:
    p = sub.add_parser("report", help="ablation reports from the sweep results -> reports/<profile>/ (tables with "
                                      "the paper's numbers, claims, plots, README)")
    p.add_argument("--profile", default="tiny", help="the profile whose results to report (default tiny)")
    p.add_argument("--results", default="results", help="results folder (default results/): reads <results>/<profile>/")
    p.add_argument("--out", default="reports", help="reports folder (default reports/): writes <out>/<profile>/")
    p.add_argument("--ablations", default="ablations", help="folder of the table files (default ablations/)")
    p.add_argument("--skip-measure", action="store_true",
                   help="do not re-measure the block's latency/memory vs size; re-plot the existing block_scaling.csv")
    p.add_argument("--no-attention", action="store_true", help="skip the attention figure (paper's Figure 3)")
    p.add_argument("--from-wandb", metavar="PATH|ENTITY/PROJECT", default=None,
                   help="take the run records from W&B: offline run folders under PATH, or a project's runs "
                        "(public API); written to <results>/wandb/<profile>/ first")
    p.add_argument("--data", default=None, help="with --from-wandb: the data set root of a profile that needs one")
    p.add_argument("--no-wandb", action="store_true",
                   help="do not log the tables to W&B (one report run per table, offline unless logged in)")
    p.set_defaults(func=cmd_report)


def cmd_compare(args) -> None:
    from nlbench.io import atomic_write_text
    from nlbench.report.reproduction import compare_results, render

    for folder in (args.reference, args.reproduction):
        if not (Path(folder) / args.profile).is_dir():
            raise ValueError(f"{Path(folder) / args.profile} does not exist (a results folder: <folder>/<profile>/)")
    comparison = compare_results(Path(args.reference), Path(args.reproduction), args.profile, Path(args.ablations))
    out = Path(args.out or Path(args.reproduction) / args.profile / "reproduction.md")
    atomic_write_text(out, render(comparison, args.reference, args.reproduction, args.profile) + "\n")
    print(f"{comparison.headline()} -> {out}")


def _add_compare_parser(sub) -> None:
    p = sub.add_parser("compare", help="a reproduction's results beside the reference's: runs bit for bit, rows "
                                       "within the reference's CI, claims' verdicts (make reproduce)")
    p.add_argument("reference", help="the reference results folder (the committed one: results)")
    p.add_argument("reproduction", help="the results folder of the run to check (make reproduce: repro/results)")
    p.add_argument("--profile", default="tiny", help="the profile to compare (default tiny)")
    p.add_argument("--ablations", default="ablations", help="folder of the table files (default ablations/)")
    p.add_argument("--out", default=None, help="markdown file (default <reproduction>/<profile>/reproduction.md)")
    p.set_defaults(func=cmd_compare)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nlbench", description=__doc__)
    parser.add_argument("--version", action="version", version=f"nlbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("block", help="cost of one block (non-local by default): params, FLOPs, latency, peak memory")
    p.add_argument("--channels", type=int, default=512, help="input channels C (res3: 512, res4: 1024)")
    p.add_argument("--shape", type=_shape, default=(4, 28, 28), help="T x H x W of the feature map")
    p.add_argument("--block", default="nonlocal", metavar="NAME",
                   help="a registered block (nlbench blocks) or package.module:Name (default: nonlocal)")
    p.add_argument("--block-args", default=None, metavar="YAML",
                   help="the block's keyword arguments as a YAML mapping, e.g. '{ratio: 0.25}' (not for nonlocal)")
    _add_knob_args(p, "block")
    _add_measurement_args(p)
    p.set_defaults(func=cmd_block)

    p = sub.add_parser("blocks", help="the registered blocks (model.block) with their arguments and defaults")
    p.add_argument("--json", action="store_true", help="print one JSON list instead of a table")
    p.set_defaults(func=cmd_blocks)

    p = sub.add_parser("profile", help="cost of one model of the zoo: params, FLOPs, latency, peak memory")
    _add_model_args(p)
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--channels-last", action="store_true", help="weights and activations in NDHWC memory")
    _add_knob_args(p, "profile")
    _add_measurement_args(p)
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("zoo", help="measure every model of Table 2 at paper scale -> reports/model_zoo.md")
    p.add_argument("--out", default="reports/model_zoo.md")
    p.add_argument("--csv", default="results/model_zoo.csv")
    p.add_argument("--peers-csv", default="results/model_zoo_peers.csv")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--peers-only", action="store_true",
                   help="only re-count the table against the peers' published numbers (seconds; no timing)")
    p.set_defaults(func=cmd_zoo)
    _add_data_parser(sub)
    _add_train_parser(sub)
    _add_weights_parsers(sub)
    _add_sweep_parser(sub)
    _add_agent_parser(sub)
    _add_report_parser(sub)
    _add_compare_parser(sub)
    return parser


def _rerun_pinned(argv: list[str], err) -> int:
    """The command again, in a fresh Python that starts with the kernels' pin set (``pin`` put it in
    os.environ; this process had computed with other kernels before it knew of the pin)."""
    import subprocess

    if os.environ.get(_RERUN) == "1":  # a fresh process that still cannot pin: say so, do not loop
        raise err
    print(f"nlbench: {err.args[0].split(';')[0]}: running the command again in a fresh process", file=sys.stderr)
    return subprocess.call([sys.executable, "-m", "nlbench.cli", *argv], env={**os.environ, _RERUN: "1"})


_RERUN = "NLBENCH_PINNED_RERUN"


def main(argv: list[str] | None = None) -> int:
    from nlbench.numerics import NotPinned

    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    try:
        try:
            code = args.func(args)
        except NotPinned as err:  # raised before the run wrote a file
            code = _rerun_pinned(argv, err)
    except (ValueError, FileNotFoundError) as err:
        # A user's mistake gets one line naming it, not a traceback. Not KeyError: user input is checked
        # where it is read (ConfigError is a ValueError), so a KeyError is a bug and keeps its traceback.
        message = err.args[0] if err.args else str(err)
        print(f"nlbench: error: {message}", file=sys.stderr)
        return 2
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
