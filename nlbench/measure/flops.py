"""Multiply-add counts, in the paper's convention: one multiply-add (MAC) = one FLOP (docs/paper.md section 5).

``count_flops`` traces a module with fvcore's ``FlopCountAnalysis`` and adds what fvcore lacks, so that
every path of the non-local block is charged the same as the naive one, which materialises the N x N'
pairwise matrix with two matrix products. Each instantiation's fast op (``Instantiation.fast_op``) is charged
B * N * N' times its ``macs_per_pair`` (``nlbench.ops.instantiations``):

- ``aten::scaled_dot_product_attention`` (fvcore counts it as zero): q k^T and (.) v, i.e.
  prod(batch) * L * S * (E + Ev). A causal mask or dropout does not change the charge.
- ``nlbench::dot_product_pairwise`` (the associativity path): B * N * N' * (d_k + d_v), what
  (q k^T) v costs, not the cheaper q (k^T v) it actually runs.
- ``nlbench::concatenation_pairwise`` (the sort + scan path): B * N * N' * d_v, what ReLU(a_i + b_j) @ v
  costs; forming the matrix is additions only.
- ``aten::matmul`` is replaced: fvcore's handler indexes shape[-2] of the second operand and so crashes
  on a 1-D operand (the concatenation block's ``q @ w_f[:d]``), and it ignores broadcasting of the
  first operand's batch dims. Ours follows torch.matmul's rules and agrees with fvcore elsewhere.
- ``NO_MAC_OPS`` get an explicit zero: ops with no product that is accumulated. Everything else fvcore
  has no handler for stays in ``FlopCount.unsupported``; a non-empty one means the total is a lower bound.

What fvcore's own handlers count, for reference (fvcore 0.1.5.post20221221, ``fvcore/nn/jit_handles.py``):

- ``aten::linear``: prod(input shape) * out_features; bias ignored.
- ``aten::matmul``/``aten::mm``/``aten::bmm``/``aten::addmm``: the product's MACs; bias/addend ignored.
- ``aten::einsum``: numpy's optimal contraction path, its FLOPs halved (MACs).
- ``aten::_convolution``: batch * prod(weight shape) * prod(output spatial); bias ignored.
- ``aten::batch_norm``: NOT multiply-adds of a contraction but elementwise work, and it depends on the
  mode: in eval (running statistics) numel(input) * 2 with an affine weight, * 1 without; in training
  (batch statistics, and also in eval when the BN keeps no running statistics) numel(input) * 5 with an
  affine weight, * 4 without. ``count_flops`` puts the module in eval mode, so the BN after W_z in a
  non-local block costs 2 * B * C * T * H * W. (A deployed model can fold it into W_z for free; we
  keep fvcore's charge so that the block is counted like every other BN of the network.)

``nonlocal_block_macs`` gives the same number for a ``NonLocalBlock`` from the formula alone.
"""
from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from nlbench.ops.instantiations import BY_NAME, REGISTRY, Instantiation

with warnings.catch_warnings():
    # Importing fvcore.nn runs torch.jit.script on its loss functions, which torch now deprecates.
    warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=DeprecationWarning)
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn.jit_handles import get_shape

# Ops charged zero MACs: each moves, compares or selects data, or does elementwise arithmetic, so no
# product is ever summed into an accumulator. fvcore's own ignore list already covers layout ops
# (reshape, permute, cat, ...). Reductions such as aten::sum / aten::mean are deliberately NOT here:
# a hand-written contraction (x * w).sum(-1) shows up as mul + sum, and sum staying unsupported is
# what flags it.
NO_MAC_OPS: frozenset[str] = frozenset(
    {
        # Subsampling of keys/values: a max over each window, comparisons only.
        "aten::max_pool1d",
        "aten::max_pool2d",
        "aten::max_pool3d",
        "aten::max_pool1d_with_indices",
        "aten::max_pool2d_with_indices",
        "aten::max_pool3d_with_indices",
        # The concatenation scan (if ever traced op by op): sorting and binary search compare,
        # gather copies, prefix sums only add.
        "aten::sort",
        "aten::searchsorted",
        "aten::gather",
        "aten::cumsum",
        # Elementwise arithmetic: the residual x + z, a_i + b_j, ReLU, the 1/C(x) division, the
        # softmax scale, and integer shape arithmetic the tracer records (b * groups, b * h * w).
        "aten::add",
        "aten::add_",
        "aten::mul",
        "aten::div",
        "aten::div_",
        "aten::relu",
        "aten::relu_",
        # Softmax normalisation C(x) = sum_j exp(.): exponentials and a sum, no products.
        "aten::softmax",
        # A video model's global average pool: a sum and one division per channel. (fvcore charges its
        # 2-D twin one per output element; zero keeps to this list's rule, and both are negligible.)
        "aten::adaptive_avg_pool3d",
    }
)


# ------------------------------------------------------------------------------------------ handlers


def _zero_handle(inputs: list[Any], outputs: list[Any]) -> int:
    return 0


def _shape(value: Any, op: str) -> list[int]:
    shape = get_shape(value)
    if shape is None:
        # The tracer lost the static shape: better to fail loudly than to charge a guess.
        raise ValueError(f"{op}: operand without a static shape in the trace; cannot count its MACs")
    return list(shape)


def _matmul_handle(inputs: list[Any], outputs: list[Any]) -> int:
    """torch.matmul's MACs: a 1-D operand is a vector; batch dims broadcast."""
    a, b = _shape(inputs[0], "aten::matmul"), _shape(inputs[1], "aten::matmul")
    n, k = (1, a[0]) if len(a) == 1 else (a[-2], a[-1])
    m = 1 if len(b) == 1 else b[-1]
    batch = torch.broadcast_shapes(torch.Size(a[:-2]), torch.Size(b[:-2]))
    return math.prod(batch) * n * k * m


def _pairwise_handle(inst: Instantiation):
    """The handler of ``inst.fast_op``: queries (..., N, d_k), keys (..., N', .), values (..., N', d_v) and the
    output (..., N, d_v) give B * N * N' pairs, each charged ``inst.macs_per_pair``. The output carries the
    broadcast batch dims (heads of q under grouped-query attention in SDPA). Concatenation's queries are one
    number each (a_i = w_f^T theta_i, shape (B, N)): d_k = 1 there."""

    def handle(inputs: list[Any], outputs: list[Any]) -> int:
        q, v, y = (_shape(t, inst.fast_op) for t in (inputs[0], inputs[2], outputs[0]))
        return math.prod(y[:-1]) * v[-2] * inst.macs_per_pair(1 if inst.w_f else q[-1], v[-1])

    return handle


def mac_handles() -> dict[str, Any]:
    """The handlers ``count_flops`` adds to fvcore's defaults (usable with ``set_op_handle(**...)``)."""
    handles: dict[str, Any] = {name: _zero_handle for name in NO_MAC_OPS}
    handles["aten::matmul"] = _matmul_handle
    handles.update({inst.fast_op: _pairwise_handle(inst) for inst in REGISTRY})
    return handles


# ------------------------------------------------------------------------------------------ counting


@dataclass(frozen=True)
class FlopCount:
    """Multiply-adds of one forward call. ``unsupported``: op -> occurrences that were charged nothing."""

    total: int
    by_module: dict[str, int]
    by_operator: dict[str, int]
    unsupported: dict[str, int]
    unsupported_by_module: dict[str, dict[str, int]] = field(default_factory=dict)  # module -> op -> count

    @property
    def gflops(self) -> float:
        """Total in G multiply-adds, the unit of the paper's tables."""
        return self.total / 1e9


def count_flops(module: nn.Module, inputs: Tensor | Sequence[Tensor]) -> FlopCount:
    """Count the MACs of ``module(*inputs)`` in eval mode (see the module docstring for what is counted).

    The module is traced once under ``torch.no_grad()``; every submodule's training flag is put back
    afterwards, so a model with frozen (eval) BN inside a training model is left as it was. A submodule with
    an ``extra_macs(input_shape)`` member (the block contract, ``nlbench.ops.registry``) adds what it says its
    ops cost beyond what fvcore sees, to itself and every module above it.
    """
    inputs = inputs if isinstance(inputs, Tensor) else tuple(inputs)
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    extra: dict[str, int] = {}
    members = [(name, m) for name, m in module.named_modules() if callable(getattr(m, "extra_macs", None))]

    def charge(name: str):
        def hook(m, args):
            extra[name] = extra.get(name, 0) + int(m.extra_macs(tuple(args[0].shape)))
        return hook

    handles = [m.register_forward_pre_hook(charge(name)) for name, m in members]
    try:
        analysis = (
            FlopCountAnalysis(module, inputs)
            .set_op_handle(**mac_handles())
            # We report the unsupported ops in FlopCount instead of logging them.
            .unsupported_ops_warnings(False)
            .uncalled_modules_warnings(False)
        )
        with torch.no_grad():
            total = analysis.total()
        by_module = {name: int(n) for name, n in analysis.by_module().items()}
        for name, macs in extra.items():
            parts = name.split(".") if name else []
            for k in range(len(parts) + 1):  # the module itself and every parent, "" (the root) included
                prefix = ".".join(parts[:k])
                by_module[prefix] = by_module.get(prefix, 0) + macs
        return FlopCount(
            total=int(total) + sum(extra.values()),
            by_module=by_module,
            by_operator={name: int(n) for name, n in analysis.by_operator().items()},
            unsupported=dict(Counter(analysis.unsupported_ops())),
            unsupported_by_module={name: dict(ops) for name, _ in module.named_modules()
                                   if (ops := analysis.unsupported_ops(name))},
        )
    finally:
        for h in handles:
            h.remove()
        for m, training in flags:
            m.training = training


# ------------------------------------------------------------------------------------------ analytic


def nonlocal_block_macs(block: nn.Module, input_shape: Sequence[int]) -> int:
    """MACs of one ``NonLocalBlock`` call on an input of ``input_shape``, from the formula.

    With B the batch, C the input channels, d the inner channels, P = T*H*W the positions of the clip
    and P' = T'*H'*W' after the max pool (floor mode, stride = kernel), key channels d_k = d (C for the
    gaussian, which has no theta/phi) and d_v = d:

    - embeddings (1x1x1 convs; bias adds are not counted): theta B*P*C*d; phi and g B*P_k*C*d
      each, where P_k = P when pooling comes after them (or there is none) and P' when the input
      is pooled first.
    - pairwise term, over G groups of n queries and n' keys per clip (spacetime: 1 x P vs P';
      space: T x H*W vs H'*W'; time: H*W x T vs T'; k frames: T/k x k*H*W vs (k/k_t)*H'*W'):
      B*G*n*n' times the instantiation's ``macs_per_pair`` (softmax and dot product d_k + d_v,
      concatenation d_v), plus for concatenation its projections a = theta . w_f[:d] (B*P*d) and
      b = phi . w_f[d:] (B*G*n'*d).
    - W_z: B*P*d*C.
    - the BN after W_z (if any) as fvcore charges it in eval mode: B*C*P*2 (affine) or *1, or with
      no running statistics (it then normalises by batch statistics) *5 / *4.
    """
    if len(input_shape) not in (3, 4, 5):
        raise ValueError(f"nonlocal_block_macs: expected a 3-D, 4-D or 5-D shape, got {tuple(input_shape)}")
    b, c = input_shape[0], input_shape[1]
    if c != block.in_channels:
        raise ValueError(f"nonlocal_block_macs: input has {c} channels but the block has {block.in_channels}")
    t, h, w = (1,) * (5 - len(input_shape)) + tuple(input_shape[2:])
    kt, kh, kw = block.pool_kernel if block.subsample else (1, 1, 1)
    tk, hk, wk = t // kt, h // kh, w // kw  # keys' (T', H', W')

    d = block.inner_channels
    inst = BY_NAME[block.instantiation]
    d_k = d if inst.embedded else c
    positions, key_positions = t * h * w, tk * hk * wk

    macs = 0
    if inst.embedded:
        macs += b * positions * c * d  # theta
    pool_first = block.subsample and block.subsample_order == "before"
    embedded_positions = key_positions if pool_first else positions
    macs += b * embedded_positions * c * d * (2 if inst.embedded else 1)  # phi (embedded only) and g

    groups, n, n_keys = block.pairs((t, h, w))
    macs += b * groups * n * n_keys * inst.macs_per_pair(d_k, d)
    if inst.w_f:
        macs += b * groups * (n + n_keys) * d  # a = theta . w_f[:d], b = phi . w_f[d:]

    macs += b * positions * d * c  # W_z
    bn = block.bn
    if bn is not None:
        affine = bn.weight is not None
        batch_statistics = bn.running_mean is None
        per_element = (5 if affine else 4) if batch_statistics else (2 if affine else 1)
        macs += b * c * positions * per_element
    return macs


__all__ = ["FlopCount", "NO_MAC_OPS", "count_flops", "mac_handles", "nonlocal_block_macs"]
