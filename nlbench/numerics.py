"""Which kernels a run's numbers come from, and the numerics version of the code that made them.

Kernels. ATen picks its vectorised kernels (DEFAULT, AVX2, AVX512) and oneDNN its instruction set from the
CPU, each the first time it dispatches in a process, from ``ATEN_CPU_CAPABILITY`` and ``ONEDNN_MAX_CPU_ISA``
if set. Kernels of two levels round differently, and a few training steps turn one rounding into points of
top-1: a record is reproducible bit for bit only with the kernels that made it. A pin (a profile's ``isa:`` in
ablations/profiles.yaml, which becomes each run's ``trainer.isa``) caps both at one level through those
variables. They are read once, and early: building a run config's model already dispatches, so a process
that has computed before the pin cannot take it (``pin`` says so); the CLI then runs its command again in a
fresh process with them set, and sweep workers, spawned processes, inherit them.

Numerics version. ``NUMERICS_VERSION`` names what the code computes from a config, kernels fixed: it is
bumped, deliberately, with any change that moves a number (a BN momentum, an init, the data order).
tests/golden_numerics.json holds the losses and weights a small pinned run gives at the current version,
and tests/test_numerics.py fails when the code no longer gives them. Every record carries the version; the
report flags records of another one. Records written before records carried it were made by version 1.
"""
from __future__ import annotations

import ctypes
import functools
import os
import platform
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

NUMERICS_VERSION = 1
LEGACY_VERSION = 1  # what a record without a "numerics" key was made by


@dataclass(frozen=True)
class Level:
    """An ISA level: the values the two variables take, the CPU flags it needs, and what ATen and oneDNN
    then report (``kernels()``)."""

    aten: str
    onednn: str
    cpu_flags: tuple[str, ...]
    cpu_capability: str
    onednn_isa: str


# avx2: what the committed tiny records used, on every x86-64 CPU since 2013-2015. sse41: the floor, no
# vector kernels in ATen (slow; it shows a pin taking effect on an AVX2 machine).
LEVELS = {
    "avx2": Level("avx2", "AVX2", ("avx2", "fma"), "AVX2", "Intel AVX2"),
    "sse41": Level("default", "SSE41", ("sse4_1",), "DEFAULT", "Intel SSE4.1"),
}
ENV = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")
CPUINFO = Path("/proc/cpuinfo")


class NotPinned(ValueError):
    """The process computed with other kernels before the pin: it takes effect in a fresh process only. (A
    ValueError, as a ConfigError: this module imports no torch until asked, so that a process can pin first.)"""


def lacks(level: str) -> str | None:
    """Why this machine cannot run ``level``'s kernels (one phrase), None when it can."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return f"this CPU is not x86-64 ({platform.machine()})"
    try:
        flags = next((line.split(":", 1)[1].split() for line in CPUINFO.read_text().splitlines()
                      if line.startswith("flags")), None)
    except OSError:
        flags = None
    if flags is None:
        return None  # no way to ask: ATen and oneDNN fall back to what the CPU has, and the record says which
    missing = [f for f in LEVELS[level].cpu_flags if f not in flags]
    return f"this CPU lacks {', '.join(missing)}" if missing else None


def env_of(level: str) -> dict[str, str]:
    lv = LEVELS[level]
    return dict(zip(ENV, (lv.aten, lv.onednn)))


@functools.cache
def onednn_isa() -> str | None:
    """The ISA oneDNN runs in this process, from the header its verbose mode prints once per process (read
    from file descriptor 1 around one small convolution); None when it printed before, or never."""
    import torch

    if not torch.backends.mkldnn.is_available():
        return None
    # A channels-last convolution large enough for ATen to hand it to oneDNN (not its own small-conv path).
    x = torch.zeros(2, 16, 8, 16, 16).contiguous(memory_format=torch.channels_last_3d)
    w = torch.zeros(16, 16, 3, 3, 3).contiguous(memory_format=torch.channels_last_3d)
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    libc.fflush(None)
    with tempfile.TemporaryFile() as out:
        saved = os.dup(1)
        os.dup2(out.fileno(), 1)
        try:
            with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                torch.nn.functional.conv3d(x, w)
            libc.fflush(None)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        out.seek(0)
        text = out.read().decode(errors="replace")
    for line in text.splitlines():
        if ",info,cpu,isa:" in line:
            return line.split(",info,cpu,isa:", 1)[1].strip()
    return None


def kernels() -> dict:
    """The kernels this process runs: ATen's CPU capability, oneDNN's ISA, torch's thread count."""
    import torch

    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "onednn_isa": onednn_isa(),
            "threads": torch.get_num_threads()}


def in_effect(level: str, ran: dict) -> bool:
    lv = LEVELS[level]
    return ran["cpu_capability"] == lv.cpu_capability and ran["onednn_isa"] in (lv.onednn_isa, None)


def pin(level: str | None) -> dict:
    """Cap this process's kernels at ``level`` (None: leave them to the CPU); returns the record's account
    (``kernels()`` with ``pin``: the level in effect, and ``unpinned``: why not, where the CPU lacks it).

    Sets the variables (children inherit them) before anything reads them here; raises NotPinned when this
    process already computed with other kernels."""
    if level is None:
        return {**kernels(), "pin": None}
    if level not in LEVELS:
        raise ValueError(f"isa={level!r} is not allowed; expected one of {', '.join(LEVELS)} or null")
    why = lacks(level)
    if why:
        _say_once(f"nlbench: {why}: kernels not pinned to {level}; runs are recorded unpinned")
        return {**kernels(), "pin": None, "unpinned": f"{why} (asked: {level})"}
    os.environ.update(env_of(level))
    ran = kernels()
    if not in_effect(level, ran):
        variables = " ".join(f"{k}={v}" for k, v in env_of(level).items())
        raise NotPinned(f"isa={level}: this process already runs {ran['cpu_capability']} / {ran['onednn_isa']} "
                        f"kernels; the pin takes effect in a fresh process ({variables} set before Python starts, "
                        f"or the nlbench command line)")
    return {**ran, "pin": level}


@functools.cache
def _say_once(line: str) -> None:
    print(line, file=sys.stderr)


def same_kernels(a: dict | None, b: dict | None) -> bool | None:
    """Whether two records' kernels are the same (None: one record does not say)."""
    if not a or not b:
        return None
    return all(a.get(k) == b.get(k) for k in ("cpu_capability", "onednn_isa", "threads"))


def version_of(record: dict) -> int:
    return record.get("numerics", LEGACY_VERSION)


# What a re-run of a record's config must give again, bit for bit.
REPRODUCED = ("status", "top1", "top5", "val_top1", "val_top5", "curve", "per_class", "per_family", "group_top1",
              "per_family_group", "steps")


def compare(record: dict, rerun: dict) -> tuple[str, list[str]]:
    """(verdict, lines): ``reproduced`` (every figure of REPRODUCED equal), ``other kernels`` (they differ and
    so do the kernels: no verdict on the code), ``other numerics`` (the record is of another numerics
    version), or ``mismatch``."""
    # The figures the record holds: a record from before a figure existed (a field, or a key of the curve's
    # points) is compared on what it has.
    differ = [k for k in REPRODUCED if k != "curve" and k in record and record.get(k) != rerun.get(k)]
    lines = [f"{k}: record {record.get(k)!r}, re-run {rerun.get(k)!r}" for k in differ]
    a, b = record.get("curve") or [], rerun.get("curve") or []
    equal = [all(q.get(k) == v for k, v in p.items()) for p, q in zip(a, b)]
    if not all(equal) or len(a) != len(b):
        differ.append("curve")
        first = equal.index(False) if False in equal else min(len(a), len(b))
        keys = sorted({k for p in a for k in p} - {"step", "epoch"})
        lines.append(f"curve: {sum(equal)} of {max(len(a), len(b))} points equal; "
                     + "; ".join(f"{k} record {[p.get(k) for p in a]}, re-run {[p.get(k) for p in b]}" for k in keys)
                     + f" (first difference at point {first + 1})")
    if not differ:
        return "reproduced", [f"top1 {rerun.get('top1')}, {len(rerun.get('curve') or [])} curve points: identical"]
    kernels_a, kernels_b = record.get("kernels"), rerun.get("kernels")
    if same_kernels(kernels_a, kernels_b) is False:
        return "other kernels", [f"kernels differ: record {_said(kernels_a)}, re-run {_said(kernels_b)}; the "
                                 f"figures below are not comparable (pin the record's level: trainer.isa)", *lines]
    if version_of(record) != version_of(rerun):
        return "other numerics", [f"numerics version {version_of(record)} made the record, {version_of(rerun)} the "
                                  "re-run", *lines]
    if kernels_a is None:
        lines.insert(0, "the record does not say which kernels made it (records before the kernels field: AVX2, "
                        "docs/tiny_recipe.md)")
    return "mismatch", lines


def _said(k: dict | None) -> str:
    return "unknown" if not k else f"{k.get('cpu_capability')} / {k.get('onednn_isa')} / {k.get('threads')} threads"


__all__ = ["LEVELS", "NUMERICS_VERSION", "NotPinned", "compare", "env_of", "in_effect", "kernels", "lacks", "pin",
           "same_kernels", "version_of"]
