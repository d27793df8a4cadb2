"""Fit the CPU cost model of ``nlbench.ops.dispatch`` from timings of every pairwise path.

    python -m benchmarks.calibrate_dispatch [--out results/bench/dispatch_calibration.json] [--rounds 3]
                                            [--batch 1 --append]

The problems are the pairwise terms the model zoo really runs (``benchmarks.zoo_shapes``: every zoo block is
run on the meta device and the (B, N, N', d_k, d_v) it hands to ``dispatch.choose`` is recorded), each timed
for every instantiation family so that dot product and concatenation get as many points as the softmax. A
problem whose naive matrices would not fit the memory budget is timed on its fast path only. The paths of a
problem are interleaved round by round and the median round is kept: the machine is shared. Then, per
(family, path, grad), a least-squares fit of relative error gives the coefficients of ``dispatch.features``;
it prints them as the ``CPU_COEFFICIENTS`` literal and each problem's predicted and measured ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.zoo_shapes import zoo_shapes
from nlbench.io import atomic_write_text
from nlbench.ops import NonLocalBlock, dispatch
from nlbench.ops.instantiations import BY_NAME, REGISTRY

# The instantiation each cost-model family is timed as: its first with theta and phi (d_k = d_v is then natural).
FAMILY_INSTANTIATION = {}
for _inst in REGISTRY:
    if _inst.embedded:
        FAMILY_INSTANTIATION.setdefault(_inst.family, _inst)


def zoo_problems(batch: int | None = None) -> list[dispatch.Problem]:
    """The distinct pairwise problems of the zoo's blocks (recorded, not derived by hand), at each block's
    profile batch or at ``batch`` clips."""
    shapes = zoo_shapes()
    seen: list[dispatch.Problem] = []
    original = dispatch.choose

    def record(instantiation, q, k, v):
        p = dispatch.problem(instantiation, q, k, v)
        seen.append(dispatch.Problem(p.instantiation, p.groups, p.n, p.n_keys, p.d_k, p.d_v, torch.float32,
                                     torch.device("cpu"), False))
        return "naive"

    dispatch.choose = record
    try:
        for shape in shapes:
            with torch.device("meta"):
                block = NonLocalBlock(shape.channels, **shape.block_kwargs())
            x = torch.empty(batch or shape.batch, shape.channels, shape.t, shape.h, shape.w, device="meta")
            with torch.no_grad():
                block(x)
    finally:
        dispatch.choose = original
    # Problems with d_k == d_v are timed for every family anyway: one of them per size is enough.
    distinct = {(p.groups, p.n, p.n_keys, p.d_k, p.d_v): p for p in seen}
    return sorted(distinct.values(), key=lambda p: p.pairs * (p.d_k + p.d_v))


def _runner(path: str, p: dispatch.Problem, grad: bool):
    inst = BY_NAME[p.instantiation]
    g = torch.Generator().manual_seed(0)
    q = torch.randn(p.groups, p.n, p.d_k, generator=g)
    k = torch.randn(p.groups, p.n_keys, p.d_k, generator=g)
    v = torch.randn(p.groups, p.n_keys, p.d_v, generator=g)
    gy = torch.randn(p.groups, p.n, p.d_v, generator=g)
    if inst.w_f:
        q, k = q[..., 0].contiguous(), k[..., 0].contiguous()  # a_i and b_j: the block projects first
    for t in (q, k, v):
        t.requires_grad_(grad)
    c = p.d_k**-0.5 if inst.softmax else float(p.n_keys)  # the softmax's scale, or C = N'

    def fn():
        return inst.naive_fn(q, k, v, c)[0] if path == "naive" else inst.fast_fn(q, k, v, c)

    if grad:
        return lambda: fn().backward(gy)

    def call():
        with torch.no_grad():
            fn()

    return call


def measure(problems: list[dispatch.Problem], rounds: int, log=print) -> list[dict]:
    records = []
    for base in problems:
        # d_k != d_v only arises in the Gaussian: timed as itself; otherwise every family at this size.
        timed_as = [BY_NAME[base.instantiation]] if base.d_k != base.d_v else list(FAMILY_INSTANTIATION.values())
        for grad in (True, False):
            cases = {}
            for inst in timed_as:
                p = dispatch.Problem(inst.name, base.groups, base.n, base.n_keys, base.d_k, base.d_v, base.dtype,
                                     base.device, grad)
                over = p.naive_bytes() > dispatch.memory_budget(p.device)
                for path in ("naive", inst.fast):
                    if path == "naive" and over:
                        continue
                    cases[(inst.family, path)] = (p, _runner(path, p, grad))
            times: dict = {key: [] for key in cases}
            for fn_p in cases.values():
                fn_p[1]()  # warm-up
            for _ in range(rounds):
                for key, (_, fn) in cases.items():
                    start = time.perf_counter()
                    fn()
                    times[key].append(time.perf_counter() - start)
            for (family, path), (p, _) in cases.items():
                rec = dict(family=family, path=path, grad=grad, instantiation=p.instantiation, groups=p.groups,
                           n=p.n, n_keys=p.n_keys, d_k=p.d_k, d_v=p.d_v, seconds=statistics.median(times[(family, path)]),
                           rounds=times[(family, path)])
                records.append(rec)
                log(f"{family:7s} {path:6s} grad={grad!s:5s} B={p.groups} N={p.n} N'={p.n_keys} d_k={p.d_k} "
                    f"d_v={p.d_v}: {rec['seconds'] * 1e3:.1f} ms")
    return records


def _key(rec: dict) -> tuple:
    return tuple(rec[k] for k in ("family", "path", "grad", "groups", "n", "n_keys", "d_k", "d_v"))


def _problem(rec: dict) -> dispatch.Problem:
    return dispatch.Problem(rec["instantiation"], rec["groups"], rec["n"], rec["n_keys"], rec["d_k"], rec["d_v"],
                            torch.float32, torch.device("cpu"), rec["grad"])


def fit(records: list[dict]) -> dict[tuple[str, str, bool], tuple[float, ...]]:
    """Non-negative least squares of the relative error, per (family, path, grad)."""
    out = {}
    keys = sorted({(r["family"], r["path"], r["grad"]) for r in records})
    for key in keys:
        rows = [r for r in records if (r["family"], r["path"], r["grad"]) == key]
        x = np.array([dispatch.features(_problem(r), key[1]) for r in rows], dtype=float)
        y = np.array([r["seconds"] for r in rows])
        xw, yw = x / y[:, None], np.ones_like(y)  # relative error: divide each row by its time
        active = list(range(x.shape[1]))
        while True:
            coef = np.zeros(x.shape[1])
            coef[active] = np.linalg.lstsq(xw[:, active], yw, rcond=None)[0]
            if (coef[active] >= 0).all() or len(active) == 1:
                break
            active.remove(active[int(np.argmin(coef[active]))])  # a negative rate is not physical: drop it
        out[key] = tuple(float(f"{c:.4g}") for c in np.clip(coef, 0, None))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/bench/dispatch_calibration.json"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--refit", action="store_true", help="fit the timings already in --out, measure nothing")
    parser.add_argument("--batch", type=int, default=None,
                        help="clips per problem (default: each block's profile batch; 1: as `make bench` runs them)")
    parser.add_argument("--append", action="store_true",
                        help="keep the timings already in --out (other batches) and fit all of them together")
    args = parser.parse_args(argv)
    if args.refit:
        records = json.loads(args.out.read_text())["records"]
    else:
        records = measure(zoo_problems(args.batch), args.rounds)
        info = dict(torch=torch.__version__, threads=torch.get_num_threads(), rounds=args.rounds,
                    budget_bytes=dispatch.memory_budget(torch.device("cpu")), batch=args.batch or "profile",
                    loadavg=os.getloadavg())
        runs = [info]
        if args.append and args.out.exists():
            old = json.loads(args.out.read_text())
            runs = [*old.get("runs", [old["info"]]), info]
            measured = {_key(r) for r in records}
            records = [r for r in old["records"] if _key(r) not in measured] + records
        atomic_write_text(args.out, json.dumps(dict(info=info, runs=runs, records=records), indent=1))
    coefficients = fit(records)
    print("CPU_COEFFICIENTS = {")
    for key, coef in coefficients.items():
        print(f"    {key!r}: {coef!r},")
    print("}")
    dispatch.CPU_COEFFICIENTS.update(coefficients)
    by_problem: dict = {}
    for r in records:
        by_problem.setdefault((r["family"], r["grad"], r["groups"], r["n"], r["n_keys"], r["d_k"], r["d_v"]), {})[r["path"]] = r
    for key, paths in by_problem.items():
        if len(paths) < 2:
            continue
        naive, fast = paths["naive"], next(v for k, v in paths.items() if k != "naive")
        p = _problem(naive)
        predicted = dispatch.predicted_seconds(p, fast["path"]) / dispatch.predicted_seconds(p, "naive")
        measured = fast["seconds"] / naive["seconds"]
        wrong = (predicted < 1) != (measured < 1) and abs(measured - 1) > 0.05
        print(f"{key}: fast/naive measured {measured:.2f} predicted {predicted:.2f}{'  WRONG' if wrong else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
