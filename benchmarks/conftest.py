"""Shared setup for the pytest-benchmark suite (run by `make bench`).

The JSON that pytest-benchmark writes is the only input of the performance report, so everything the
report states about the machine and the code that ran is recorded here, not looked up later.
"""
from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent

# CUDA is measured where present, never required.
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ops_digest() -> str:
    # The block's source changes between commits and in uncommitted work alike: a digest of it says
    # exactly which kernels a JSON file measured.
    digest = hashlib.sha256()
    for path in sorted((ROOT / "nlbench" / "ops").glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


# Taken when the suite starts, i.e. when the block's code is imported: machine_info is written at the
# end of the run, by which time the sources may have been edited again.
_OPS_SHA256 = _ops_digest()
_GIT_COMMIT = _git("rev-parse", "--short", "HEAD")
_OPS_DIRTY = bool(_git("status", "--porcelain", "--", "nlbench/ops"))


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["nlbench"] = {
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "ops_sha256": _OPS_SHA256,
        "git_commit": _GIT_COMMIT,
        "ops_dirty": _OPS_DIRTY,
    }


_SELECTED = pytest.StashKey[list]()


def pytest_collection_finish(session):
    session.config.stash[_SELECTED] = [item.name for item in session.items]


def pytest_benchmark_update_json(config, benchmarks, output_json):
    # The tests this run set out to measure (pytest's names, "test_zoo_block[<label>-<pass>]"): a case that
    # wrote no benchmark (it failed, or the run was cut short) is one the report can name as not measured.
    output_json["selected"] = config.stash.get(_SELECTED, [])


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)
