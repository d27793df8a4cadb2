"""Which exact path ``impl="auto"`` runs for one pairwise term: a cost model, and a memory budget.

Every path of ``nlbench.ops.pairwise`` computes the same y; they differ in time and memory. The naive path
materialises the N x N' pairwise matrix per group and runs at dense-GEMM speed; the fast paths never build it
but are not always quicker: on a CPU, the fused SDPA kernel's backward runs well below MKL's GEMM rate at
wide heads (d_k >= 512), the Gaussian's d_v = C/2 must be padded to d_k = C for it, and q (k^T v) only pays
off when N * N' > (N + N') d_k d_v / (d_k + d_v). So ``auto`` asks two questions:

1. Would the naive path's N x N' matrices exceed the memory budget? Then the fast path, whatever it costs.
   The budget is ``NLBENCH_NAIVE_MEMORY_BUDGET`` (bytes, or with a K/M/G/T suffix) or ``set_memory_budget``,
   default ``DEFAULT_BUDGET_FRACTION`` of the device's memory: physical RAM on a CPU, the GPU's total memory
   on CUDA. The estimate counts ``LIVE_MATRICES`` matrices of B x N x N' elements of the input's dtype.
2. Otherwise, which path does the cost model predict faster? On a CPU, each path's time is a linear model
   ``sum(coef * feature)`` of its multiply-adds, its pairwise elements (B N N', the memory traffic of the
   softmax / ReLU passes), for the naive path the pairs that no longer fit in the cache (``CACHE_BYTES``),
   and for the sort + scan path its sort work; SDPA's time is divided by the share of the threads its
   forward keeps busy (``flash_forward_balance``), its backward's scaled by threads over groups where there
   are fewer groups than threads (``PARALLEL_OVER_GROUPS``); coefficients per (path, grad) are
   fitted by ``python -m benchmarks.calibrate_dispatch`` on this project's 2-core AMD EPYC CPU (torch 2.13,
   float32; see ``CPU_COEFFICIENTS``). Only ratios matter, so the fit transfers to other CPUs as long as the
   GEMM / elementwise / fused-kernel balance is similar.

On CUDA (not measured: no GPU was available when this was written) the rule is the one the kernels' design
implies: the fused SDPA kernels (flash / memory-efficient) are the fast choice for both softmax
instantiations; dot product takes whichever of q k^T v and q (k^T v) has fewer multiply-adds (both are
GEMMs at the same rate); concatenation takes the sort + scan path, whose naive alternative is a bandwidth-
bound broadcast over N x N'.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

import torch
from torch import Tensor

from nlbench.ops.instantiations import BY_NAME

# ---------------------------------------------------------------------------------------------- budget

DEFAULT_BUDGET_FRACTION = 0.25
# Matrices of B x N x N' alive at the naive path's peak: logits and weights in a forward that keeps the graph;
# with the backward also dWeights and dLogits (measured peaks of the naive block are 3.2-3.4 such matrices).
LIVE_MATRICES = {False: 2, True: 4}
_ENV = "NLBENCH_NAIVE_MEMORY_BUDGET"
_budget_override: int | None = None


def parse_bytes(text: str) -> int:
    """``"6G"`` -> 6 * 2**30; plain digits are bytes. A one-line ValueError names the variable otherwise."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", str(text), re.IGNORECASE)
    if not match:
        raise ValueError(f"{_ENV}={text!r} is not a size; expected bytes, e.g. 6000000000, 6G or 512M")
    return int(float(match[1]) * 1024 ** "_kmgt".index(match[2].lower() or "_"))


def device_memory(device: torch.device) -> int:
    """Total memory of ``device`` in bytes: the GPU's on CUDA, physical RAM otherwise."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_budget(device: torch.device) -> int:
    """Bytes the naive path's pairwise matrices may take on ``device`` (see the module docstring)."""
    if _budget_override is not None:
        return _budget_override
    if os.environ.get(_ENV):
        return parse_bytes(os.environ[_ENV])
    return int(DEFAULT_BUDGET_FRACTION * device_memory(device))


def set_memory_budget(nbytes: int | str | None) -> None:
    """Set the budget for this process (bytes or e.g. ``"4G"``); None restores the default."""
    global _budget_override
    _budget_override = None if nbytes is None else (parse_bytes(nbytes) if isinstance(nbytes, str) else int(nbytes))


# ------------------------------------------------------------------------------------------------ model


@dataclass(frozen=True)
class Problem:
    """One pairwise term: B groups of N queries and N' keys, d_k channels per query/key, d_v per value."""

    instantiation: str
    groups: int
    n: int
    n_keys: int
    d_k: int
    d_v: int
    dtype: torch.dtype
    device: torch.device
    grad: bool

    @property
    def pairs(self) -> int:
        return self.groups * self.n * self.n_keys

    def naive_bytes(self) -> int:
        return LIVE_MATRICES[self.grad] * self.pairs * self.dtype.itemsize


# Past about this many bytes of B x N x N' matrices (a last-level cache share) the naive path's softmax / ReLU
# passes stream from memory; the fused kernels never build the matrices (see ``features``).
CACHE_BYTES = 16 * 2**20


def features(p: Problem, path: str) -> tuple[float, ...]:
    """What the time of ``path`` on ``p`` is linear in (the coefficients' order): the naive path's here, the fast
    path's its instantiation's (``Instantiation.fast_features``). The last feature of every path is the number
    of groups B: a per-group cost, which dominates the time-only mode's B = H*W groups of N = T positions."""
    inst = BY_NAME[p.instantiation]
    if path == "naive":
        # The multiply-adds of eq. (1) as written (Instantiation.macs_per_pair), the N x N' passes, and the pairs
        # beyond the cache (CACHE_BYTES), whose passes stream from memory: on a quiet machine the naive
        # fwd+bwd of one clip at 25088 x 6272 took 1.7x SDPA's, at 3136 x 3136 1.2x, at 3136 x 784 0.85x.
        macs = p.pairs * inst.macs_per_pair(p.d_k, p.d_v)
        spill = max(0.0, p.pairs - CACHE_BYTES / p.dtype.itemsize)
        return (macs, p.pairs, p.groups, spill)
    if path == inst.fast:
        return inst.fast_features(p.groups, p.n, p.n_keys, p.d_k, p.d_v)
    raise ValueError(f"dispatch: {path!r} is not a path of instantiation {p.instantiation!r}")


# Seconds per feature unit, fitted by benchmarks/calibrate_dispatch.py (results/bench/dispatch_calibration.json)
# on the project's 2-core AMD EPYC (loaded by other jobs; medians of interleaved rounds), torch 2.13, float32.
# Key: (family, path, grad); grad=True is forward + backward, grad=False a forward without autograd.
# The naive path's last coefficient (its pairs beyond CACHE_BYTES) and the SDPA forward's thread balance
# (``flash_forward_balance``) came later, from quiet timings of one and two clips of every zoo problem
# (results/bench/dispatch_calibration_quiet.json): with the other coefficients held, the coefficient chosen by a
# grid search, the model picks within 5 % of the faster path in 169 of those 184 problems (163 before). Refitting
# every coefficient on them gives 170-172 of 184, but changes 10 of the 42 choices that the committed tiny-profile
# runs were trained and evaluated with (their records would no longer reproduce), so it waits for the next full
# run of that profile; `python -m benchmarks.calibrate_dispatch --refit --out
# results/bench/dispatch_calibration_quiet.json` prints it. Both later terms vanish at one thread, where every
# tiny-profile run computes.
CPU_COEFFICIENTS: dict[tuple[str, str, bool], tuple[float, ...]] = {
    ('concat', 'naive', False): (6.316e-11, 1.307e-08, 1.191e-05, 0.0),
    ('concat', 'naive', True): (3.026e-10, 1.551e-08, 3.718e-05, 3e-07),
    ('concat', 'sorted', False): (3.871e-08, 7.703e-08, 0.0),
    ('concat', 'sorted', True): (1.667e-07, 2.891e-07, 0.0),
    ('dot', 'assoc', False): (7.053e-11, 7.707e-09, 3.95e-05),
    ('dot', 'assoc', True): (2.894e-10, 2.699e-08, 0.001256),
    ('dot', 'naive', False): (7.142e-11, 9.003e-09, 9.206e-06, 0.0),
    ('dot', 'naive', True): (2.48e-10, 1.698e-08, 5.102e-05, 3e-07),
    ('softmax', 'naive', False): (7.58e-11, 1.439e-08, 1.092e-05, 0.0),
    ('softmax', 'naive', True): (2.549e-10, 4.383e-08, 6.609e-05, 3e-07),
    ('softmax', 'sdpa', False): (7.33e-11, 0.0, 6.393e-06),
    ('softmax', 'sdpa', True): (2.929e-10, 0.0, 6.092e-05),
}


# Paths whose CPU kernels parallelise over the B groups only: the fused attention backward splits the work by
# (batch, head), so with fewer groups than threads the other threads idle (one clip in spacetime mode: B = 1,
# measured 1.5-1.6x slower than naive on 2 threads, against 0.85x at B = 2). The coefficients above were fitted
# at B >= 2 = threads, where the factor is 1.
PARALLEL_OVER_GROUPS = {("softmax", "sdpa", True)}


def flash_forward_balance(p: Problem, threads: int) -> float:
    """The share of ``threads`` busy in the CPU flash-attention forward: it splits the work into (group, query
    block) units, blocks of 32, 64 or 256 rows as N is under 192, under 768 or more (ATen's
    ``_scaled_dot_product_flash_attention_cpu``), and gives each thread one contiguous run of units
    (``at::parallel_for``). One clip at N = 784 is 4 blocks of 256, 256, 256 and 16 rows: on 2 threads one
    thread does 512 rows while the other does 272, 77 % busy, which is why one-clip inference at N <= 784 ran
    10-25 % slower on SDPA than naive on a quiet machine but not at two clips (results/bench/
    dispatch_calibration_quiet.json). 1 with one thread."""
    if threads <= 1:
        return 1.0
    q_split = 256 if p.n >= 768 else 64 if p.n >= 192 else 32
    blocks = -(-p.n // q_split)
    units = p.groups * blocks

    def rows(u: int) -> int:  # rows in units [0, u)
        return (u // blocks) * p.n + min((u % blocks) * q_split, p.n)

    chunk = -(-units // min(threads, units))
    busiest = max(rows(min(u + chunk, units)) - rows(u) for u in range(0, units, chunk))
    return rows(units) / (threads * busiest)


def predicted_seconds(p: Problem, path: str) -> float:
    key = (BY_NAME[p.instantiation].family, path, p.grad)
    seconds = sum(c * f for c, f in zip(CPU_COEFFICIENTS[key], features(p, path)))
    threads = torch.get_num_threads()
    if key in PARALLEL_OVER_GROUPS:
        seconds *= threads / min(p.groups, threads)
    elif path == "sdpa":
        seconds /= flash_forward_balance(p, threads)
    return seconds


def _cuda_choice(p: Problem) -> str:
    inst = BY_NAME[p.instantiation]
    if inst.family == "dot":
        naive, assoc = features(p, "naive")[0], features(p, "assoc")[0]
        return "assoc" if assoc < naive else "naive"
    return inst.fast


def choose_path(p: Problem) -> str:
    """``"naive"`` or the instantiation's fast path (``Instantiation.fast``) for problem ``p``."""
    fast = BY_NAME[p.instantiation].fast
    if p.device.type == "meta":
        return fast  # shape propagation only: nothing runs
    if p.naive_bytes() > memory_budget(p.device):
        return fast
    if p.device.type == "cuda":
        return _cuda_choice(p)
    naive_s, fast_s = predicted_seconds(p, "naive"), predicted_seconds(p, fast)
    return fast if fast_s < naive_s else "naive"


def problem(instantiation: str, q: Tensor, k: Tensor, v: Tensor) -> Problem:
    """The ``Problem`` of q (B, N, d_k), k (B, N', d_k), v (B, N', d_v) as the block is about to run it."""
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
    return Problem(instantiation, q.shape[0], q.shape[1], k.shape[1], q.shape[-1], v.shape[-1], q.dtype, q.device,
                   grad)


def choose(instantiation: str, q: Tensor, k: Tensor, v: Tensor) -> str:
    """What ``impl="auto"`` runs for these operands: ``"naive"`` or the fast path's name."""
    return choose_path(problem(instantiation, q, k, v))


__all__ = [
    "CPU_COEFFICIENTS", "DEFAULT_BUDGET_FRACTION", "LIVE_MATRICES", "Problem", "choose", "choose_path",
    "features", "memory_budget", "parse_bytes", "predicted_seconds", "problem", "set_memory_budget",
]
