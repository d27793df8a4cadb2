"""The four instantiations of the pairwise function f (paper eq. 2-5), one entry each.

An entry is everything the project knows about one instantiation: its exact paths (``nlbench.ops.pairwise``),
which cost-model family ``impl="auto"`` prices it with (``nlbench.ops.dispatch``), and the multiply-adds its
pairwise term is charged (``nlbench.measure.flops``). The block, the knobs, the dispatcher, the FLOP counter,
the benchmarks and the performance report all read this table, so a new instantiation is one entry here plus
its reference in ``tests/reference.py`` (and, where its fast path is a new kernel, a family of coefficients in
``dispatch.CPU_COEFFICIENTS``, fitted by ``python -m benchmarks.calibrate_dispatch``).

Both paths of an entry take the same operands: queries (B, N, d_k), keys (B, N', d_k), values (B, N', d_v) and
one number ``c``, the logits' scale for a softmax and the normaliser C otherwise. ``naive_fn`` returns
(y, weights) through the N x N' matrix; ``fast_fn`` returns the same y without building it. Concatenation's
queries and keys arrive already projected by w_f to one number per position (``w_f``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from torch import Tensor

from nlbench.ops import pairwise

# ------------------------------------------------------------------------- the fast paths' cost features
# What the CPU time of each fast path is linear in, per (B, N, N', d_k, d_v), in the order of the coefficients
# ``dispatch.CPU_COEFFICIENTS`` holds for it. The last feature of every path is B: a per-group cost, which
# dominates the time-only mode's B = H*W groups of N = T positions. The naive path's features are the same for
# every instantiation but for its multiply-adds (``dispatch.features``).


def _sdpa_features(b: int, n: int, m: int, dk: int, dv: int) -> tuple[float, ...]:
    # softmax_sdpa pads v to d_k (the CPU flash kernel needs d_v == d_k): the Gaussian pays 2 d_k.
    return (b * n * m * (dk + max(dk, dv)), b * n * m, b)


def _assoc_features(b: int, n: int, m: int, dk: int, dv: int) -> tuple[float, ...]:
    # the products, and the d_k x d_v matrix k^T v of every group (and its gradient) written out.
    return (b * (n + m) * dk * dv, b * dk * dv, b)


def _sorted_features(b: int, n: int, m: int, dk: int, dv: int) -> tuple[float, ...]:
    # prefix sums and gathers of v, and the sort of the keys plus a binary search per query.
    return (b * (n + m) * dv, b * (n + m) * math.log2(m + 1), b)


# -------------------------------------------------------------------------------------------- the entry


@dataclass(frozen=True)
class Instantiation:
    """One pairwise function f and normaliser C of eq. (1), and how each part of the project runs it."""

    name: str
    # theta and phi are 1x1x1 convs; without them (the Gaussian) f reads x itself, so d_k = C.
    embedded: bool
    # f = ReLU(w_f^T [theta_i, phi_j]): theta and phi are each projected to one number first, so there are no
    # logits theta^T phi to scale.
    w_f: bool
    # The cost model's coefficients (dispatch.CPU_COEFFICIENTS) are per family: entries running the same
    # kernels share them. The softmax family normalises by C = sum_j f, a softmax over j.
    family: str
    naive_fn: Callable[[Tensor, Tensor, Tensor, float], tuple[Tensor, Tensor]]
    fast_fn: Callable[[Tensor, Tensor, Tensor, float], Tensor]
    fast: str  # the fast path's name, a value of the ``impl`` knob
    fast_op: str  # the op FLOP counters see for the fast path (charged ``macs_per_pair`` like the naive one)
    fast_features: Callable[[int, int, int, int, int], tuple[float, ...]]
    # Multiply-adds of the naive path per (i, j) pair, from d_k and d_v: what eq. (1) costs as written.
    macs_per_pair: Callable[[int, int], int]

    @property
    def softmax(self) -> bool:
        return self.family == "softmax"


def _logits_then_values(d_k: int, d_v: int) -> int:
    return d_k + d_v  # q_i . k_j, then the weighted sum of v_j


def _values_only(d_k: int, d_v: int) -> int:
    return d_v  # a_i + b_j is an addition; only the weighted sum of v_j multiplies


_SOFTMAX = dict(family="softmax", naive_fn=pairwise.softmax_naive, fast_fn=pairwise.softmax_sdpa, fast="sdpa",
                fast_op="aten::scaled_dot_product_attention", fast_features=_sdpa_features,
                macs_per_pair=_logits_then_values)

# In the paper's order (section 3.2).
REGISTRY: tuple[Instantiation, ...] = (
    Instantiation("gaussian", embedded=False, w_f=False, **_SOFTMAX),
    Instantiation("embedded_gaussian", embedded=True, w_f=False, **_SOFTMAX),
    Instantiation("dot_product", embedded=True, w_f=False, family="dot", naive_fn=pairwise.dot_product_naive,
                  fast_fn=pairwise.dot_product_assoc, fast="assoc", fast_op=pairwise.DOT_PRODUCT_OP,
                  fast_features=_assoc_features, macs_per_pair=_logits_then_values),
    Instantiation("concatenation", embedded=True, w_f=True, family="concat", naive_fn=pairwise.concatenation_naive,
                  fast_fn=pairwise.concatenation_sorted, fast="sorted", fast_op=pairwise.CONCATENATION_OP,
                  fast_features=_sorted_features, macs_per_pair=_values_only),
)
BY_NAME: dict[str, Instantiation] = {i.name: i for i in REGISTRY}
NAMES: tuple[str, ...] = tuple(BY_NAME)
FAST_PATHS: tuple[str, ...] = tuple(dict.fromkeys(i.fast for i in REGISTRY))

__all__ = ["BY_NAME", "FAST_PATHS", "Instantiation", "NAMES", "REGISTRY"]
