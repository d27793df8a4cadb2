"""The `nlbench` command line: a thin layer over the library; every subcommand is one function call."""
from __future__ import annotations

import argparse
import json
import sys

from nlbench import __version__


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shape {text!r} is not of the form TxHxW (e.g. 4x28x28)")
    if not 1 <= len(dims) <= 3 or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"--shape {text!r}: expected 1 to 3 positive sizes, e.g. 4x28x28")
    return dims


def _mode(text: str):
    return int(text) if text.isdigit() else text


def _print_profile(profile, title: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps(profile.to_dict(), indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("params", f"{profile.params / 1e6:.3f} M")
    table.add_row("GFLOPs (multiply-adds, one input)", f"{profile.gflops:.3f}")
    for name, ms in profile.timings_ms.items():
        table.add_row(f"latency {name}", f"{ms:.1f} ms")
    table.add_row("peak memory, training step", f"{profile.peak_mem_mb:.1f} MiB")
    table.add_row("ops not counted", ", ".join(f"{k} x{v}" for k, v in profile.unsupported_ops.items()) or "none")
    table.add_row("machine", f"{profile.machine.get('cpu')} / {profile.machine.get('device')}")
    Console().print(table)


def cmd_block(args) -> None:
    from nlbench.measure import profile_module
    from nlbench.ops import NonLocalBlock

    block = NonLocalBlock(
        args.channels,
        instantiation=args.instantiation,
        mode=args.mode,
        inner_channels=args.inner_channels,
        subsample=not args.no_subsample,
        subsample_order=args.order,
        scale=args.scale,
        norm_by=args.norm_by,
        impl=args.impl,
    )
    profile = profile_module(
        block, (args.channels, *args.shape), train_batch=args.batch, device=args.device, repeats=args.repeats
    )
    _print_profile(profile, f"NonLocalBlock: {block.extra_repr()}", args.json)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nlbench", description=__doc__)
    parser.add_argument("--version", action="version", version=f"nlbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("block", help="cost of one non-local block: params, FLOPs, latency, peak memory")
    p.add_argument("--channels", type=int, default=512, help="input channels C (res3: 512, res4: 1024)")
    p.add_argument("--shape", type=_shape, default=(4, 28, 28), help="T x H x W of the feature map")
    p.add_argument("--instantiation", default="embedded_gaussian")
    p.add_argument("--mode", type=_mode, default="spacetime", help="spacetime, space, time or a group size k")
    p.add_argument("--inner-channels", type=int, default=None)
    p.add_argument("--no-subsample", action="store_true")
    p.add_argument("--order", default="after", help="subsampling order: after (paper) or before (released)")
    p.add_argument("--scale", action="store_true", help="d^-0.5 softmax scaling (released code)")
    p.add_argument("--norm-by", default="positions")
    p.add_argument("--impl", default="auto")
    p.add_argument("--batch", type=int, default=8, help="training batch for the batched timings")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=cmd_block)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, KeyError) as err:
        # A user's mistake gets one line naming it, not a traceback.
        message = err.args[0] if err.args else str(err)
        print(f"nlbench: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
