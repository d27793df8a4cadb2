"""Which block a model places, by name or import path, and the small contract every such block keeps.

The contract, as timm's ``get_attn`` has it (a name or a class, built as ``cls(channels, **kwargs)``):

- ``Block(channels, **args)`` is an ``nn.Module``; ``forward(x)`` takes (N, C, T, H, W) and returns the same
  shape, and adds its own residual (z = x + ...), as the non-local block does (docs/paper.md eq. 6).

Optional members, used when a block has them (found by ``getattr``, never by ``isinstance``, so a
researcher's class needs no nlbench base class):

- ``reset_parameters()``: the block's own initialisation. Without it, every submodule that has one is reset
  (PyTorch's defaults). Either way it runs inside the seeded per-layer stream of ``VideoResNet``.
- ``zero_init_last()``: make the block the identity (z = x), as the paper's zero BN gamma after W_z does; called
  after ``reset_parameters``, so that a block dropped into a trained backbone changes nothing at step 0
  (timm's name for the same hook on its residual blocks).
- ``minimum_input() -> (t, h, w)``: the smallest feature map the block accepts (a subsampling pool must fit).
- ``keys(thw) -> int``: how many positions each position attends over at an input map of ``thw``, for the
  report's geometry table.
- ``extra_macs(input_shape) -> int``: multiply-adds of ops that fvcore cannot see (a custom kernel), added to
  the model's FLOPs by ``nlbench.measure.count_flops``.

``model.block`` names one: a registered name (``nlbench blocks`` lists them) or ``package.module:Name``. A
built-in registers itself with ``@register_block(name)`` in a module of ``nlbench.ops.blocks``; every module
of that package is imported on the first look-up, so a new built-in is its module, its docs and its tests.
"""
from __future__ import annotations

import hashlib
import importlib
import inspect
import pkgutil
import sys
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

DEFAULT_BLOCK = "nonlocal"
_REGISTRY: dict[str, type] = {}
_DISCOVERED = False


def register_block(name: str) -> Callable[[type], type]:
    """Class decorator: make ``name`` a value of ``model.block``."""

    def add(cls: type) -> type:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"register_block: {name!r} is registered twice ({_REGISTRY[name].__qualname__}, "
                             f"{cls.__qualname__})")
        _REGISTRY[name] = cls
        cls.block_name = name
        return cls

    return add


def _discover() -> None:
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    importlib.import_module("nlbench.ops.nonlocal_block")
    package = importlib.import_module("nlbench.ops.blocks")
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")


def registered() -> dict[str, type]:
    """name -> class of every built-in block, in registration order."""
    _discover()
    return dict(_REGISTRY)


def is_path(name: str) -> bool:
    """``package.module:Name`` (a researcher's class) rather than a registered name."""
    return ":" in name


def resolve_block(name: str) -> type:
    """The class ``model.block=name`` builds; ValueError (one line, naming the value) when there is none."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"model.block={name!r} is not allowed; expected a registered name or package.module:Name")
    if not is_path(name):
        blocks = registered()
        if name not in blocks:
            raise ValueError(f"model.block={name!r} is not a registered block; expected one of {tuple(blocks)} "
                             f"or an import path package.module:Name")
        return blocks[name]
    module_name, _, attr = name.partition(":")
    # As uvicorn and celery do: a module in the directory the command runs from is importable, also from the
    # `nlbench` console script (whose sys.path starts at its own bin/); spawned workers inherit sys.path.
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"model.block={name!r}: cannot import module {module_name!r} ({e})") from None
    except Exception as e:  # the researcher's module itself raised
        raise ValueError(f"model.block={name!r}: importing {module_name!r} failed: {type(e).__name__}: {e}") from None
    obj = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ValueError(f"model.block={name!r}: module {module_name!r} has no {attr!r}")
    if not callable(obj):
        raise ValueError(f"model.block={name!r}: {attr!r} is a {type(obj).__name__}, not a class or factory")
    return obj


def fingerprint(name: str) -> str | None:
    """A hash of the source file that defines a researcher's block (None for a built-in, whose code is
    nlbench's): part of the run id, so an edited block is a new run and never served the old block's record."""
    if not is_path(name):
        return None
    target = resolve_block(name)
    module = inspect.getmodule(target) or sys.modules.get(name.partition(":")[0])
    try:
        source = Path(inspect.getsourcefile(module)).read_bytes()
    except (TypeError, OSError):  # no file (a REPL, a zip): the source text, where inspect can give it
        source = inspect.getsource(module).encode()
    return hashlib.sha256(source).hexdigest()[:16]


def build_block(name: str, channels: int, args: dict | None = None) -> nn.Module:
    """``Block(channels, **args)`` for a block that is not the non-local one (whose knobs are model keys);
    a bad argument is a one-line ValueError naming it."""
    cls = resolve_block(name)
    try:
        return cls(channels, **(args or {}))
    except (TypeError, ValueError) as e:
        raise ValueError(f"model.block_args={dict(args or {})!r} for block {name!r}: {e}") from None


def check_block(name: str, args: dict | None, channels: int = 32) -> None:
    """Build a small throwaway block and run it once, so a wrong name, argument or contract fails when the
    config is made, naming the key, instead of deep inside a run. Draws nothing from torch's generator."""
    with torch.random.fork_rng(devices=[]):
        block = build_block(name, channels, args)
        if not isinstance(block, nn.Module):  # the contract's one hard requirement: parameters, train/eval
            raise ValueError(f"model.block={name!r} built a {type(block).__name__}, not a torch.nn.Module")
        thw = tuple(max(4, m) for m in minimum_input(block))
        x = torch.randn(2, channels, *thw)
        try:
            with torch.no_grad():
                out = block.eval()(x)
        except Exception as e:
            raise ValueError(f"model.block={name!r}: forward of a (2, {channels}, {', '.join(map(str, thw))}) "
                             f"input failed: {type(e).__name__}: {e}") from None
        if not isinstance(out, torch.Tensor) or out.shape != x.shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"model.block={name!r}: the output must have the input's shape {tuple(x.shape)}; "
                             f"got {got}")


# ------------------------------------------------------------------------------- the optional members


def placed_blocks(model: nn.Module) -> dict[str, nn.Module]:
    """Qualified name -> block of the blocks a model placed (``VideoResNet.placed_blocks``); {} for a model
    that places none, or for a bare block."""
    member = getattr(model, "placed_blocks", None)
    return dict(member()) if callable(member) else {}


def init_block(block: nn.Module) -> None:
    """Initialise ``block`` by its own rule (or its submodules' defaults), then make it the identity if it
    can be (``zero_init_last``)."""
    reset = getattr(block, "reset_parameters", None)
    if callable(reset):
        reset()
    else:
        for m in block.modules():
            if m is not block and callable(getattr(m, "reset_parameters", None)):
                m.reset_parameters()
    zero = getattr(block, "zero_init_last", None)
    if callable(zero):
        zero()


def minimum_input(block: nn.Module) -> tuple[int, int, int]:
    member = getattr(block, "minimum_input", None)
    return tuple(member()) if callable(member) else (1, 1, 1)


def block_keys(block: nn.Module, thw) -> int | None:
    member = getattr(block, "keys", None)
    return int(member(tuple(thw))) if callable(member) else None


def extra_macs(block: nn.Module, input_shape) -> int:
    member = getattr(block, "extra_macs", None)
    return int(member(tuple(input_shape))) if callable(member) else 0


def describe(name: str) -> dict[str, Any]:
    """A block's arguments with their defaults and the optional members it has (``nlbench blocks``)."""
    cls = resolve_block(name)
    params = list(inspect.signature(cls).parameters.values())[1:]  # after channels
    args = {p.name: (None if p.default is inspect.Parameter.empty else p.default) for p in params
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    doc = (inspect.getdoc(cls) or "").strip().splitlines()
    members = [m for m in ("reset_parameters", "zero_init_last", "minimum_input", "keys", "extra_macs")
               if callable(getattr(cls, m, None))]
    return {"name": name, "class": f"{cls.__module__}:{cls.__qualname__}", "args": args,
            "doc": doc[0] if doc else "", "members": members}


__all__ = [
    "DEFAULT_BLOCK", "block_keys", "build_block", "check_block", "describe", "extra_macs", "fingerprint",
    "init_block", "is_path", "minimum_input", "placed_blocks", "register_block", "registered", "resolve_block",
]
