"""What produced a record: the code's git commit (and whether the checkout had changes) and the versions of
the packages that decide its numbers."""
from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path

import nlbench

# The distributions whose versions go into every record (their import names differ for some: av is PyAV).
PACKAGES = ("torch", "pytorch_lightning", "numpy", "optuna", "fvcore", "av", "wandb", "torchmetrics", "pandas")


# What a sweep writes into the checkout itself: a change there is a result, not a change of the code.
OUTPUTS = ("results", "reports")


def _git(*args: str, root: Path | None = None) -> str | None:
    root = root or Path(nlbench.__file__).resolve().parent
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def code_version(root: Path | None = None) -> dict:
    """``{"commit": sha, "dirty": bool}`` of the git checkout the nlbench package is imported from (or
    ``root``); both None when it is not one (an installed wheel) or git is missing. Dirty: a tracked file
    changed outside ``OUTPUTS`` (a sweep running from a checkout updates its committed results as it goes)."""
    commit = _git("rev-parse", "HEAD", root=root)
    if commit is None:
        return {"commit": None, "dirty": None}
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ":/",
                  *(f":(top,exclude){p}" for p in OUTPUTS), root=root)
    return {"commit": commit.strip(), "dirty": None if status is None else bool(status.strip())}


def package_versions(names=PACKAGES) -> dict[str, str | None]:
    """name -> installed version (importlib.metadata), None when it is not installed."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


__all__ = ["PACKAGES", "code_version", "package_versions"]
