"""Random streams derived from a run's seed, one per purpose, so that nothing else can move a number.

A run draws its data order, its augmentation, its loader workers' seeds and every layer's initial weights
from its own stream, keyed by ``(seed, purpose, ...)``: whether W&B is on, how many workers load, which
process trains, or which other layers the model has (a non-local block more or less) cannot shift any of
them. This is what makes two rows of an ablation table at one seed a paired comparison.

Hand-written over numpy's SeedSequence because the keys are names (``"init"``, ``"layer3.5.conv1"``), which
SeedSequence does not take; a SHA-256 of the key is stable across processes, platforms and versions
(unlike Python's ``hash``).
"""
from __future__ import annotations

import contextlib
import hashlib
import json

import torch


def derive_seed(seed: int, *keys: str | int) -> int:
    """A 63-bit seed for the stream ``(seed, *keys)``: different keys give independent streams."""
    blob = json.dumps([int(seed), *keys], separators=(",", ":")).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "little") & (2**63 - 1)


def generator(seed: int, *keys: str | int) -> torch.Generator:
    """A CPU torch.Generator on the stream ``(seed, *keys)``."""
    return torch.Generator().manual_seed(derive_seed(seed, *keys))


@contextlib.contextmanager
def global_stream(seed: int, *keys: str | int):
    """Run the body with torch's global CPU generator on the stream ``(seed, *keys)``, restoring its state
    after: for code that draws from the global generator and takes none (``nn.Module.reset_parameters``)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, *keys))
        yield


__all__ = ["derive_seed", "generator", "global_stream"]
