"""The knobs of the non-local block, declared once.

Each knob is a name, its allowed values, its default and a help line. Everything that takes the block's
knobs is generated from this table: ``NonLocalBlock``'s argument checks, the fields of
``nlbench.models.NonLocalKnobs`` (and so of a run config's ``model`` section) and the flags of
``nlbench block`` / ``nlbench profile``. Checks that relate two knobs (a fast path that belongs to another
instantiation, a scale for concatenation) stay with the block, which sees them together.

``preset`` marks the knobs where the paper and its peers differ (docs/paper.md section 2, docs/presets.md):
a model config leaves them None and takes them from a ``NonLocalBlock`` preset.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from nlbench.identity import Added
from nlbench.ops.instantiations import FAST_PATHS
from nlbench.ops.instantiations import NAMES as INSTANTIATIONS

MODES = ("spacetime", "space", "time")
SUBSAMPLE_ORDERS = ("after", "before")
INITS = ("paper", "caffe2", "zero_conv", "pytorch")
NORMS = ("keys", "positions")
# "auto" picks between the naive path and the instantiation's fast one (nlbench.ops.instantiations).
IMPLS = ("auto", "naive", *FAST_PATHS)


def _is_int(v, low: int = 1) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def _is_mode(v) -> bool:
    return v in MODES or _is_int(v)


def _is_pool_kernel(v) -> bool:
    k = (v,) if isinstance(v, int) and not isinstance(v, bool) else v
    return isinstance(k, (tuple, list)) and 1 <= len(k) <= 3 and all(_is_int(s) for s in k)


def triple(value, name: str, owner: str, *, leading: int | None = None) -> tuple[int, int, int]:
    """(t, h, w) from a positive int or a tuple of positive ints; a one-line ValueError naming ``owner: name``
    otherwise. An int is every axis, unless ``leading`` is given: then an int or a shorter tuple names the
    trailing axes and the others are ``leading`` (a pool kernel 2 on an (N, C, L) input pools L alone)."""
    if leading is None:
        v = (value,) * 3 if isinstance(value, int) else tuple(value)
    else:
        v = (value,) if isinstance(value, int) else tuple(value)
        v = (leading,) * (3 - len(v)) + v
    if len(v) != 3 or not all(_is_int(k) for k in v):
        raise ValueError(
            f"{owner}: {name}={value!r} is not allowed; expected a positive int or 3 positive ints (t, h, w)"
        )
    return v  # type: ignore[return-value]


def _is_scale(v) -> bool:
    return isinstance(v, bool) or (isinstance(v, (int, float)) and v > 0)


def _is_ratio(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and 0 < v <= 4


# ------------------------------------------------------------------------------------- CLI text -> value


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("true", "yes", "1", "on"):
        return True
    if low in ("false", "no", "0", "off"):
        return False
    raise ValueError(text)


def _parse_mode(text: str):
    return int(text) if text.isdigit() else text


def _parse_int(text: str) -> int:
    return int(text)


def _parse_pool_kernel(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.lower().split("x"))


def _parse_scale(text: str):
    try:
        return _parse_bool(text)
    except ValueError:
        return float(text)


@dataclass(frozen=True)
class Knob:
    """One argument of ``NonLocalBlock`` (or, ``block=False``, of the models that build blocks)."""

    name: str
    type: Any  # the annotation of a model config's field (None always allowed where ``preset``)
    default: Any  # NonLocalBlock's default
    check: Callable[[Any], bool]
    expected: str  # what an error message says is allowed
    help: str
    parse: Callable[[str], Any] = str  # command-line text -> value
    preset: bool = False  # a model config leaves it None and takes the value from a NonLocalBlock preset
    block: bool = True  # False: the models' knob, resolved into a block argument (inner_ratio)
    added: Added | None = None  # a knob added after run ids existed (nlbench.identity)

    @property
    def flag(self) -> str:
        return "--" + self.name.lower().replace("_", "-")

    def error(self, value, owner: str) -> ValueError:
        return ValueError(f"{owner}: {self.name}={value!r} is not allowed; expected {self.expected}")

    def validate(self, value, owner: str) -> None:
        if not self.check(value):
            raise self.error(value, owner)

    def from_text(self, text: str):
        """The value of ``--flag TEXT``; a one-line ValueError naming the flag and the allowed values."""
        try:
            value = self.parse(text)
        except ValueError:
            value = text
        if not self.check(value):
            raise ValueError(f"{self.flag} {text!r} is not allowed; expected {self.expected}")
        return value


def _choices(values) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, str) and v in values


KNOBS: tuple[Knob, ...] = (
    Knob("instantiation", str, "embedded_gaussian", _choices(INSTANTIATIONS), f"one of {INSTANTIATIONS}",
         "the pairwise function f and normaliser C (paper eq. 2-5)"),
    Knob("mode", str | int, "spacetime", _is_mode, f"one of {MODES} or a temporal group size k >= 1",
         "which positions j each i sees: spacetime, space (same frame), time (same place) or k (groups of k frames)",
         parse=_parse_mode),
    Knob("inner_channels", int | None, None, lambda v: v is None or _is_int(v), "a positive int",
         "channels of theta, phi and g (default: half the block's input channels)", parse=_parse_int),
    Knob("inner_ratio", float | None, None, lambda v: v is None or _is_ratio(v), "a number in (0, 4] (C/2: 0.5)",
         "inner channels as a fraction of each block's input channels (instead of inner_channels)", parse=float,
         block=False),
    Knob("subsample", bool, True, lambda v: isinstance(v, bool), "true or false",
         "max-pool the keys and values by pool_kernel", parse=_parse_bool),
    Knob("subsample_order", str, "after", _choices(SUBSAMPLE_ORDERS), f"one of {SUBSAMPLE_ORDERS}",
         "after: pool phi(x) and g(x) (paper); before: pool x before phi and g (released code)", preset=True),
    Knob("pool_kernel", int | tuple, (1, 2, 2), _is_pool_kernel,
         "an int or 1 to 3 positive ints (t, h, w), e.g. 1x2x2", "subsampling kernel (= stride), TxHxW",
         parse=_parse_pool_kernel),
    Knob("scale", bool | float, False, _is_scale, "false, true or a positive float",
         "multiply theta^T phi by d^-0.5 (true) or a float: the released code's softmax scaling", parse=_parse_scale,
         preset=True),
    Knob("norm_by", str, "keys", _choices(NORMS), f"one of {NORMS}",
         "C of dot product / concatenation: keys (N', the paper's C(x_hat)) or positions (N)", preset=True),
    Knob("init", str, "paper", _choices(INITS), f"one of {INITS}",
         "weight init: paper (MSRA, BN gamma 0), caffe2 (N(0, 0.01)), zero_conv (no BN, W_z 0), pytorch",
         preset=True),
    Knob("W_z_bias", bool, True, lambda v: isinstance(v, bool), "true or false",
         "W_z has a bias (mmcv drops it when a norm follows)", parse=_parse_bool, preset=True,
         added=Added(before=True)),
    Knob("impl", str, "auto", _choices(IMPLS), f"one of {IMPLS}",
         "pairwise path: auto, naive (N x N' matrix) or the fast path (sdpa, assoc, sorted)"),
)
BY_NAME: dict[str, Knob] = {k.name: k for k in KNOBS}
BLOCK_KNOBS: tuple[str, ...] = tuple(k.name for k in KNOBS if k.block)
PRESET_KNOBS: tuple[str, ...] = tuple(k.name for k in KNOBS if k.preset)
NAMES: tuple[str, ...] = tuple(k.name for k in KNOBS)


def model_fields() -> list[tuple[str, Any, Any]]:
    """(name, annotation, default) of every knob as a model config holds it: preset knobs default to None."""
    return [(k.name, k.type | None if k.preset else k.type, None if k.preset else k.default) for k in KNOBS]


__all__ = [
    "BLOCK_KNOBS", "BY_NAME", "IMPLS", "INITS", "INSTANTIATIONS", "KNOBS", "Knob", "MODES", "NAMES",
    "NORMS", "PRESET_KNOBS", "SUBSAMPLE_ORDERS", "model_fields", "triple",
]
