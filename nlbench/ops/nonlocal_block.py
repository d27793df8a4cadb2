"""The non-local block of Wang et al. (CVPR 2018), eq. (1)-(6), in every variant the ablations use.

    y_i = 1/C(x_hat) * sum_j f(x_i, x_hat_j) g(x_hat_j)   (1, with subsampling: j over the keys x_hat)
    z_i = BN(W_z y_i) + x_i                               (6)

Names follow the paper: ``theta``, ``phi`` and ``g`` are the 1x1x1 embeddings, ``W_z`` the output
projection, ``bn`` the BatchNorm after it (None for the ``zero_conv`` init) and, for concatenation,
``w_f`` the projection of [theta_i, phi_j] to a scalar (first half of its weights multiplies theta).

Where the paper and its released code or its re-implementations differ (docs/paper.md section 2,
docs/presets.md) both behaviours are selectable: ``scale`` (d^-0.5 on theta^T phi), ``subsample_order``
(max pool after phi/g, or pool the input before them), ``init``, ``norm_by`` and ``W_z_bias``. The knobs
are declared once in ``nlbench.ops.knobs``; ``NonLocalBlock.from_preset`` reproduces named peers, and
``tests/test_peers.py`` checks each preset against its peer's installed code.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nlbench.ops import dispatch, instantiations
from nlbench.ops.knobs import BLOCK_KNOBS, BY_NAME, INSTANTIATIONS, MODES, triple
from nlbench.ops.registry import register_block

# The instantiations whose C(x) is a softmax: the peers scale theta^T phi inside their softmax branch only.
SOFTMAX = tuple(i.name for i in instantiations.REGISTRY if i.softmax)
DEFAULT_INSTANTIATION = BY_NAME["instantiation"].default


@dataclass(frozen=True)
class Preset:
    """What a peer implementation computes, in this block's knobs (see docs/presets.md).

    ``scaled``: the instantiations whose logits theta^T phi the peer multiplies by d^-0.5. Every peer
    scales inside its softmax branch only, so dot product and concatenation are never scaled by a preset.
    """

    scaled: tuple[str, ...]
    subsample_order: str
    init: str
    norm_by: str
    W_z_bias: bool
    doc: str

    def knobs(self, instantiation: str = DEFAULT_INSTANTIATION) -> dict:
        """The preset's value of every preset knob (``nlbench.ops.knobs.PRESET_KNOBS``) for ``instantiation``."""
        return dict(
            scale=instantiation in self.scaled, subsample_order=self.subsample_order, init=self.init,
            norm_by=self.norm_by, W_z_bias=self.W_z_bias,
        )


PRESETS: dict[str, Preset] = {
    # The paper's text: no scaling, pool after phi/g, MSRA init, C(x_hat) = N' (its subsampled eq. 1).
    "paper": Preset((), "after", "paper", "keys", True, "the CVPR paper's text"),
    # video-nonlocal-net's nonlocal_helper.py: USE_SCALE inside the USE_SOFTMAX branch only; the dot
    # product divides by the number of keys (ReduceBackSum of ones); every conv has a bias.
    "released": Preset(SOFTMAX, "before", "caffe2", "keys", True, "facebookresearch/video-nonlocal-net (Caffe2)"),
    # SlowFast's Nonlocal and pytorchvideo's create_nonlocal (the same forward): scale in "softmax" only.
    "slowfast": Preset(SOFTMAX, "before", "paper", "keys", True, "facebookresearch/SlowFast Nonlocal, pytorchvideo"),
    # mmcv NonLocal3d defaults (use_scale=True, norm_cfg=None): use_scale acts in embedded_gaussian only;
    # without a norm, conv_out keeps its bias and is zero-initialised.
    "mmcv": Preset(("embedded_gaussian",), "after", "zero_conv", "keys", True, "mmcv NonLocal3d defaults (norm_cfg=None)"),
    # mmaction2 1.x's Kinetics I3D non-local configs: NonLocal3d(use_scale=False, norm_cfg=BN3d); a ConvModule
    # followed by a norm has no bias, so conv_out (W_z) has none.
    "mmaction2": Preset((), "after", "caffe2", "keys", False, "mmcv NonLocal3d with BN3d, as mmaction2's I3D configs"),
    "alexhex7": Preset((), "after", "pytorch", "keys", True, "AlexHex7/Non-local_pytorch"),
}


def _bad(arg: str, value, allowed) -> ValueError:
    return ValueError(f"NonLocalBlock: {arg}={value!r} is not allowed; expected {allowed}")


@register_block("nonlocal")
class NonLocalBlock(nn.Module):
    """Non-local block for 3-D (N, C, L), 4-D (N, C, H, W) and 5-D (N, C, T, H, W) inputs.

    Args (the keyword arguments are the block knobs of ``nlbench.ops.knobs``, which declares their defaults):
        in_channels: C of the input.
        instantiation: ``gaussian``, ``embedded_gaussian``, ``dot_product`` or ``concatenation``.
        mode: which j each i sees: ``spacetime`` (all T*H*W), ``space`` (same frame), ``time`` (same
            (h, w)), or an int k: spacetime inside consecutive groups of k frames.
        inner_channels: channels of theta/phi/g (default C // 2, the paper's bottleneck).
        subsample: max-pool the keys/values with ``pool_kernel`` (t, h, w). Pooling acts only along the
            axes the mode attends over (space: h, w; time: t); a rank-3/4 input uses the trailing entries.
        subsample_order: ``after`` (paper: pool phi(x) and g(x)) or ``before`` (released code: pool x).
        scale: multiply theta^T phi by d_k^-0.5 (True) or a float; False: the paper. The released code
            scales inside its softmax only; on dot product it is a constant factor on f (no peer uses it
            there). Concatenation has no logits to scale.
        norm_by: C of dot product / concatenation. ``keys`` (default): N', the number of keys each
            position sums over, which is the paper's C(x_hat) with subsampling and what every peer divides
            by. ``positions``: N, the positions of x (of the group), what a reading of eq. (1) that keeps
            C(x) = N after subsampling gives; it was this block's default before, kept so older runs can be
            reproduced. Without subsampling the two are equal.
        W_z_bias: W_z has a bias (paper, Caffe2, SlowFast); mmcv's conv_out has none when a norm follows.
        init: ``paper`` (MSRA, BN gamma 0), ``caffe2`` (Normal 0.01, BN gamma 0), ``zero_conv`` (no BN,
            W_z zero) or ``pytorch`` (PyTorch's default conv init, BN gamma 0).
        impl: ``auto`` (fastest exact path), ``naive`` (materialises the N x N' matrix) or the
            instantiation's fast path by name: ``sdpa`` (softmax), ``assoc`` (dot product), ``sorted``
            (concatenation).
    """

    def __init__(self, in_channels: int, **knobs) -> None:
        super().__init__()
        if not isinstance(in_channels, int) or in_channels < 1:
            raise _bad("in_channels", in_channels, "a positive int")
        for name in knobs:
            if name not in BLOCK_KNOBS:
                raise TypeError(f"NonLocalBlock() got an unexpected keyword argument {name!r}")
        # Each knob becomes the attribute of its name; one not given takes its declared default (knobs.KNOBS).
        # inner_channels, subsample, pool_kernel and scale are resolved below.
        for name in BLOCK_KNOBS:
            value = knobs.get(name, BY_NAME[name].default)
            BY_NAME[name].validate(value, "NonLocalBlock")
            setattr(self, name, value)
        inst = instantiations.BY_NAME[self.instantiation]
        named = f"instantiation={inst.name!r}"
        if self.impl not in ("auto", "naive", inst.fast):
            raise _bad("impl", self.impl, f"one of {('auto', 'naive', inst.fast)} for {named}")
        if inst.w_f and self.scale is not False:
            raise _bad("scale", self.scale, f"False for {named} (it has no logits to scale)")

        kernel = triple(self.pool_kernel, "pool_kernel", "NonLocalBlock", leading=1)
        # Pool only along the axes this mode attends over: pooling across frames in a space-only
        # block (or across locations in a time-only one) would mix positions the mode keeps apart.
        if self.mode == "space":
            kernel = (1, kernel[1], kernel[2])
        elif self.mode == "time":
            kernel = (kernel[0], 1, 1)
        elif isinstance(self.mode, int) and self.mode % kernel[0]:
            raise _bad("pool_kernel", self.pool_kernel,
                       f"a temporal size that divides the group size mode={self.mode}")

        self.in_channels = in_channels
        self.inner_channels = d = in_channels // 2 if self.inner_channels is None else self.inner_channels
        self.subsample = self.subsample and kernel != (1, 1, 1)
        self.pool_kernel = kernel
        key_channels = d if inst.embedded else in_channels
        # False: the paper's unscaled logits; True: d_k^-0.5, as the released code; a number: itself.
        scale = self.scale
        self.scale = (key_channels**-0.5 if scale else 1.0) if isinstance(scale, bool) else float(scale)

        def conv(c_in: int, c_out: int, bias: bool = True) -> nn.Conv3d:
            return nn.Conv3d(c_in, c_out, kernel_size=1, bias=bias)

        self.theta = conv(in_channels, d) if inst.embedded else None
        self.phi = conv(in_channels, d) if inst.embedded else None
        self.g = conv(in_channels, d)
        self.W_z = conv(d, in_channels, bias=self.W_z_bias)
        self.bn = None if self.init == "zero_conv" else nn.BatchNorm3d(in_channels)
        self.w_f = nn.Linear(2 * d, 1, bias=False) if inst.w_f else None
        self.record_attention = False  # set True to keep the last pairwise weights in .attention
        self.attention: Tensor | None = None
        self.reset_parameters()

    @classmethod
    def from_preset(cls, preset: str, in_channels: int, **overrides) -> "NonLocalBlock":
        """A block that computes what a named peer computes; keyword overrides win."""
        if preset not in PRESETS:
            raise _bad("preset", preset, f"one of {tuple(PRESETS)}")
        kwargs = PRESETS[preset].knobs(overrides.get("instantiation", DEFAULT_INSTANTIATION))
        kwargs.update(overrides)
        return cls(in_channels, **kwargs)

    def reset_parameters(self) -> None:
        convs = [m for m in (self.theta, self.phi, self.g, self.W_z) if m is not None]
        for m in convs:
            if self.init == "paper":
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif self.init in ("caffe2", "zero_conv"):
                nn.init.normal_(m.weight, std=0.01)
            else:
                m.reset_parameters()
            if m.bias is not None and self.init != "pytorch":
                nn.init.zeros_(m.bias)
        if self.w_f is not None:
            if self.init == "paper":
                nn.init.kaiming_normal_(self.w_f.weight, mode="fan_in", nonlinearity="relu")
            elif self.init in ("caffe2", "zero_conv"):
                nn.init.normal_(self.w_f.weight, std=0.01)
            else:
                self.w_f.reset_parameters()
        self.zero_init_last()

    def zero_init_last(self) -> None:
        """A fresh block is the identity (z = x), so it can be dropped into a trained network."""
        if self.bn is None:
            nn.init.zeros_(self.W_z.weight)
            if self.W_z.bias is not None:
                nn.init.zeros_(self.W_z.bias)
        else:
            nn.init.zeros_(self.bn.weight)
            nn.init.zeros_(self.bn.bias)

    # ------------------------------------------------------------------ the block contract (nlbench.ops.registry)

    def minimum_input(self) -> tuple[int, int, int]:
        """The smallest (T, H, W) map: the subsampling pool must fit in it."""
        return self.pool_kernel if self.subsample else (1, 1, 1)

    def pairs(self, thw) -> tuple[int, int, int]:
        """(groups, queries per group, keys per group) at an input map of ``thw``: spacetime 1 x P vs P';
        space T x H*W vs H'*W'; time H*W x T vs T'; k frames T/k x k*H*W vs (k/k_t)*H'*W' (floor pooling)."""
        t, h, w = thw
        kt, kh, kw = self.pool_kernel if self.subsample else (1, 1, 1)
        tk, hk, wk = t // kt, h // kh, w // kw
        if self.mode == "spacetime":
            return 1, t * h * w, tk * hk * wk
        if self.mode == "space":
            return t, h * w, hk * wk
        if self.mode == "time":
            return h * w, t, tk
        return t // self.mode, self.mode * h * w, (self.mode // kt) * hk * wk

    def keys(self, thw) -> int:
        """N', the keys each position attends over at an input map of ``thw``."""
        return self.pairs(thw)[2]

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, inner={self.inner_channels}, {self.instantiation}, mode={self.mode}, "
            f"subsample={self.pool_kernel if self.subsample else False} ({self.subsample_order}), "
            f"scale={self.scale:.4g}, norm_by={self.norm_by}, init={self.init}, W_z_bias={self.W_z_bias}, "
            f"impl={self.impl}"
        )

    # ------------------------------------------------------------------------------------ forward

    def _check(self, x: Tensor) -> tuple[int, int, int]:
        if x.dim() not in (3, 4, 5):
            raise ValueError(
                f"NonLocalBlock: input must be 3-D (N, C, L), 4-D (N, C, H, W) or 5-D (N, C, T, H, W); "
                f"got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"NonLocalBlock: input has {x.shape[1]} channels but in_channels={self.in_channels}"
            )
        t, h, w = (1,) * (5 - x.dim()) + tuple(int(s) for s in x.shape[2:])
        if isinstance(self.mode, int) and t % self.mode:
            raise ValueError(f"NonLocalBlock: mode={self.mode} (frames per group) does not divide T={t}")
        if self.subsample and any(k > s for k, s in zip(self.pool_kernel, (t, h, w))):
            raise ValueError(
                f"NonLocalBlock: pool_kernel={self.pool_kernel} is larger than the (T, H, W)={(t, h, w)} map"
            )
        return t, h, w

    def _group(self, u: Tensor, t: int, groups: int) -> Tensor:
        """(B, positions, d) in (t, h, w) order -> (B * groups, positions per group, d)."""
        b, n, d = u.shape
        if self.mode == "time":
            return u.reshape(b, t, n // t, d).transpose(1, 2).reshape(b * (n // t), t, d)
        # spacetime, space and k-frame groups are runs of consecutive positions: a free reshape.
        return u.reshape(b * groups, -1, d)

    def _pool(self, u: Tensor, t: int, h: int, w: int) -> Tensor:
        """Max pool a positions-major (B, T*H*W, d) tensor over (T, H, W)."""
        b, _, d = u.shape
        u5 = u.reshape(b, t, h, w, d).permute(0, 4, 1, 2, 3)
        pooled = F.max_pool3d(u5, self.pool_kernel, self.pool_kernel)
        return pooled.permute(0, 2, 3, 4, 1).reshape(b, -1, d)

    def forward(self, x: Tensor, return_attention: bool = False):
        """Returns z (same shape as x); with ``return_attention`` also the normalised weights
        f(x_i, x_j) / C(x) of shape (N, groups, positions, keys), computed by the naive path."""
        t, h, w = self._check(x)
        b, c = x.shape[:2]
        groups = {"spacetime": 1, "space": t, "time": h * w}.get(self.mode) or t // self.mode
        x5 = x.reshape(b, c, t, h, w)
        # The pairwise term wants positions-major (B, N, d) operands; reading x through a transposed
        # view lets each 1x1x1 conv be one GEMM with no copy of x, and W_z writes straight back to
        # channels-first so BatchNorm and the residual add run on contiguous memory.
        xt = x5.flatten(2).transpose(1, 2)
        d = self.inner_channels
        pool_first = self.subsample and self.subsample_order == "before"
        if pool_first:
            keys = F.max_pool3d(x5, self.pool_kernel, self.pool_kernel).flatten(2).transpose(1, 2)
            theta = xt if self.theta is None else F.linear(xt, self.theta.weight.flatten(1), self.theta.bias)
            phi = keys if self.phi is None else F.linear(keys, self.phi.weight.flatten(1), self.phi.bias)
            g = F.linear(keys, self.g.weight.flatten(1), self.g.bias)
        else:
            # theta, phi and g read the same input: one GEMM with their weights stacked.
            convs = [m for m in (self.theta, self.phi, self.g) if m is not None]
            weight = torch.cat([m.weight for m in convs]).flatten(1)
            embedded = F.linear(xt, weight, torch.cat([m.bias for m in convs]))
            keys = embedded[..., -2 * d :] if self.theta is not None else embedded
            if self.subsample:  # the paper's order: pool phi(x) and g(x), together
                keys = self._pool(keys, t, h, w)
            if self.theta is None:
                theta, phi, g = xt, (self._pool(xt, t, h, w) if self.subsample else xt), keys
            else:
                theta, (phi, g) = embedded[..., :d], keys.split(d, dim=-1)
        t_keys = t // self.pool_kernel[0] if self.subsample else t

        q, k, v = self._group(theta, t, groups), self._group(phi, t_keys, groups), self._group(g, t_keys, groups)
        # C(x_hat) = N', the keys each query sums over (paper eq. 1 with subsampling); or N, its group's positions.
        norm = float(q.shape[1] if self.norm_by == "positions" else k.shape[1])
        naive = return_attention or self.record_attention or self.impl == "naive"
        y, weights = self._pairwise(q, k, v, norm, naive)
        if weights is not None:
            weights = weights.reshape(b, groups, *weights.shape[1:])
            if self.record_attention:
                self.attention = weights.detach()

        if self.mode == "time":
            y = y.reshape(b, h * w, t, d).transpose(1, 2)
        y = y.reshape(b, t * h * w, d)
        z = torch.matmul(self.W_z.weight.flatten(1), y.transpose(1, 2))
        if self.W_z.bias is not None:
            z = z + self.W_z.bias[:, None]
        z = z.view(b, c, t, h, w)
        if self.bn is not None:
            z = self.bn(z)
        out = (x5 + z).reshape(x.shape)
        return (out, weights) if return_attention else out

    def _pairwise(self, q: Tensor, k: Tensor, v: Tensor, norm: float, naive: bool):
        inst = instantiations.BY_NAME[self.instantiation]
        naive = naive or (self.impl == "auto" and dispatch.choose(inst.name, q, k, v) == "naive")
        if inst.w_f:  # ReLU(w_f^T [theta_i, phi_j]) = ReLU(a_i + b_j): one number per query and per key
            d = self.inner_channels
            q, k = torch.matmul(q, self.w_f.weight[0, :d]), torch.matmul(k, self.w_f.weight[0, d:])
        # A softmax takes the logits' scale; otherwise the scale (1 unless asked for) divides C.
        c = self.scale if inst.softmax else norm / self.scale
        if naive:
            return inst.naive_fn(q, k, v, c)
        return inst.fast_fn(q, k, v, c), None


# The signature the knobs' declarations give __init__ (help(), inspect.signature, `nlbench blocks`).
NonLocalBlock.__init__.__signature__ = inspect.Signature(
    [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
     inspect.Parameter("in_channels", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=int)]
    + [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=BY_NAME[name].default,
                         annotation=BY_NAME[name].type) for name in BLOCK_KNOBS],
    return_annotation=None,
)

__all__ = ["NonLocalBlock", "PRESETS", "Preset", "INSTANTIATIONS", "MODES", "SOFTMAX"]
