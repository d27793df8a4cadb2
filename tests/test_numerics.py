"""One numerics version, pinned kernels.

The golden run: a few steps of a small run at the pinned ISA (AVX2; tests/conftest.py pins the session before
torch computes), whose per-step losses, final weights and BN statistics, and accuracies are stored in
tests/golden_numerics.json. Any change to what the code computes from a config fails it; a deliberate one
bumps nlbench.numerics.NUMERICS_VERSION and writes the file again:

    python -m tests.test_numerics --write      # refuses while the version is the file's and the numbers moved

The kernels: a profile's pin reaches the process that trains (a sweep's spawned worker, `nlbench train` run
again in a fresh process), and records say which kernels ran.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import yaml

from nlbench import numerics
from nlbench.training import RunConfig, read_record, train_run
from tests.test_reproducibility import weights_hash

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).with_name("golden_numerics.json")
# Smoke's model with a non-local block, 6 steps of 8 clips, validated twice: convs, BN (training and running
# statistics), the block, SGD, the data order and augmentation.
GOLDEN_CONFIG = {"seed": 0, "model": {"nl_blocks": 1, "nl_stage": "res3"},
                 "recipe": {"max_steps": 6, "val_points": 2}, "trainer": {"isa": "avx2"},
                 "measure": {"enabled": False}, "wandb": {"enabled": False}}


class _Losses(pl.Callback):
    def __init__(self):
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def golden_run(tmp: Path) -> tuple[dict, dict]:
    """(the figures the file pins, the run's record)."""
    base = RunConfig.load(ROOT / "configs" / "smoke.yaml")
    config = base.replace(**{**GOLDEN_CONFIG, "data": {"cache_dir": str(tmp / "cache")}})
    losses = _Losses()
    record = train_run(config, tmp / "run", progress=False, callbacks=[losses])
    figures = {"losses": losses.losses, "weights_sha256": weights_hash(tmp / "run"),
               **{k: record[k] for k in ("val_top1", "top1", "curve")}}
    return figures, record


@pytest.mark.integration
def test_golden_numerics(tmp_path):
    if numerics.lacks("avx2"):
        pytest.skip(f"{numerics.lacks('avx2')}: the golden figures are AVX2 kernels'")
    golden = json.loads(GOLDEN.read_text())
    figures, record = golden_run(tmp_path)
    assert record["kernels"]["pin"] == "avx2" and numerics.in_effect("avx2", record["kernels"])
    assert golden["numerics_version"] == record["numerics"] == numerics.NUMERICS_VERSION, (
        "NUMERICS_VERSION changed: write the golden figures of the new version (python -m tests.test_numerics --write)")
    assert figures == golden["figures"], (
        "the code computes other numbers than numerics version "
        f"{numerics.NUMERICS_VERSION}: if deliberate, bump nlbench.numerics.NUMERICS_VERSION and run "
        "python -m tests.test_numerics --write")


# ------------------------------------------------------------------------------------------- kernels


def _profiles_with(tmp_path: Path, isa: str) -> tuple[Path, Path]:
    from tests.test_sweep import FAST

    fast = {**FAST, "data": {**FAST["data"], "cache_dir": str(tmp_path / "cache")}}
    (tmp_path / "fast.yaml").write_text(yaml.safe_dump(fast))
    profiles = {"pinned": {"config": str(tmp_path / "fast.yaml"), "seeds": [0], "isa": isa}}
    (tmp_path / "profiles.yaml").write_text(yaml.safe_dump(profiles))
    table = {"table": "tp", "title": "pinned", "baseline": "C2D", "rows": [{"row": "C2D", "model": {"nl_blocks": 0}}]}
    (tmp_path / "tp.yaml").write_text(yaml.safe_dump(table))
    return tmp_path / "tp.yaml", tmp_path / "profiles.yaml"


@pytest.mark.integration
@pytest.mark.parametrize("workers", [1, 2])
def test_a_profiles_pin_reaches_the_process_that_trains(tmp_path, monkeypatch, workers):
    # sse41: a level below this (AVX2) session's, so the pin shows; the session computed long ago, so the
    # one worker of this sweep cannot be this process: it is spawned, with the pin set, as the workers of a
    # pool are.
    from nlbench.sweep import runner

    for k, v in numerics.env_of("avx2").items():
        monkeypatch.setenv(k, v)  # restored afterwards: pin() sets them for the children
    table, profiles = _profiles_with(tmp_path, "sse41")
    outcome = runner.run_sweeps([table], "pinned", workers=workers, progress=False, results_dir=tmp_path / "results",
                                profiles_path=profiles)
    (run_id,) = outcome.frames["pinned/tp"]["run_id"]
    record = read_record(tmp_path / "results" / "pinned" / "runs" / run_id)
    assert record["status"] == "ok" and record["numerics"] == numerics.NUMERICS_VERSION
    assert record["kernels"] | {"threads": None} == {"cpu_capability": "DEFAULT", "onednn_isa": "Intel SSE4.1",
                                                      "threads": None, "pin": "sse41"}
    assert record["code_version"]["commit"]
    # The run is the unpinned config's run: the pin is not part of its identity.
    config = RunConfig.load(tmp_path / "results" / "pinned" / "runs" / run_id / "config.yaml")
    assert config.trainer.isa == "sse41" and config.replace(trainer={"isa": None}).run_id == run_id


@pytest.mark.integration
def test_nlbench_train_runs_again_pinned_in_a_fresh_process(tmp_path, monkeypatch, capfd):
    from nlbench.cli import main

    for k, v in numerics.env_of("avx2").items():
        monkeypatch.setenv(k, v)  # this session's; pin() sets sse41's for the fresh process
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.delenv("NLBENCH_PINNED_RERUN", raising=False)
    assert main(["train", str(ROOT / "configs" / "smoke.yaml"), "trainer.isa=sse41", "measure.enabled=false",
                 f"data.cache_dir={tmp_path / 'cache'}", "--out", str(tmp_path / "run"), "--json"]) == 0
    assert "running the command again in a fresh process" in capfd.readouterr().err
    record = json.loads((tmp_path / "run" / "record.json").read_text())
    assert record["kernels"]["cpu_capability"] == "DEFAULT" and record["kernels"]["pin"] == "sse41"


def test_a_process_that_computed_refuses_another_pin(monkeypatch):
    for k, v in numerics.env_of("avx2").items():
        monkeypatch.setenv(k, v)
    torch.ones(3).add_(1)  # this session's kernels are chosen (AVX2)
    with pytest.raises(numerics.NotPinned, match="fresh process"):
        numerics.pin("sse41")
    assert numerics.pin("avx2")["pin"] == "avx2"
    with pytest.raises(ValueError, match="isa='avx9'"):
        numerics.pin("avx9")


def test_a_cpu_without_the_level_runs_unpinned_and_says_so_once(monkeypatch, tmp_path, capsys):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse sse2 sse4_1 avx\n")
    monkeypatch.setattr(numerics, "CPUINFO", cpuinfo)
    monkeypatch.setattr(numerics.platform, "machine", lambda: "x86_64")
    numerics._say_once.cache_clear()
    before = {k: os.environ.get(k) for k in numerics.ENV}
    first, second = numerics.pin("avx2"), numerics.pin("avx2")
    assert first["pin"] is None and first["unpinned"] == "this CPU lacks avx2, fma (asked: avx2)" and second == first
    assert {k: os.environ.get(k) for k in numerics.ENV} == before  # nothing pinned
    assert capsys.readouterr().err.count("lacks avx2") == 1


# ---------------------------------------------------------------------------------------- comparing


def _record(**changes) -> dict:
    base = {"status": "ok", "top1": 72.4, "val_top1": 70.0, "curve": [{"step": 50, "val_top1": 60.0}],
            "kernels": {"cpu_capability": "AVX2", "onednn_isa": "Intel AVX2", "threads": 1, "pin": "avx2"},
            "numerics": 1}
    return base | changes


def test_a_rerun_on_other_kernels_says_so_rather_than_mismatch():
    other = {"cpu_capability": "AVX512", "onednn_isa": "Intel AVX-512", "threads": 1, "pin": None}
    assert numerics.compare(_record(), _record())[0] == "reproduced"
    verdict, lines = numerics.compare(_record(), _record(top1=73.9, kernels=other))
    assert verdict == "other kernels" and "AVX2 / Intel AVX2" in lines[0] and "AVX512" in lines[0]
    verdict, lines = numerics.compare(_record(), _record(curve=[{"step": 50, "val_top1": 61.0}]))
    assert verdict == "mismatch" and lines == [
        "curve: 0 of 1 points equal; val_top1 record [60.0], re-run [61.0] (first difference at point 1)"]
    # A figure the record predates is not compared; one it holds is, in its curve's points too
    grouped = _record(group_top1=50.0, curve=[{"step": 50, "val_top1": 60.0, "val_group_top1": 25.0}])
    assert numerics.compare(_record(), grouped)[0] == "reproduced"
    verdict, lines = numerics.compare(grouped, _record(group_top1=50.0, curve=[{"step": 50, "val_top1": 60.0,
                                                                                 "val_group_top1": 50.0}]))
    assert verdict == "mismatch" and "val_group_top1 record [25.0], re-run [50.0]" in lines[0]
    assert numerics.compare(grouped, _record(group_top1=75.0, curve=grouped["curve"]))[0] == "mismatch"
    assert numerics.compare(_record(), _record(top1=1.0, numerics=2))[0] == "other numerics"
    legacy = {k: v for k, v in _record().items() if k not in ("kernels", "numerics")}
    verdict, lines = numerics.compare(legacy, _record(top1=1.0))
    assert verdict == "mismatch" and "does not say which kernels" in lines[0]
    assert numerics.version_of(legacy) == numerics.LEGACY_VERSION


@pytest.mark.integration
def test_nlbench_reproduce_compares_a_rerun_with_the_record(tmp_path, capsys):
    from tests.test_sweep import FAST

    config = RunConfig.from_dict({**FAST, "data": {**FAST["data"], "cache_dir": str(tmp_path / "cache")},
                                  "trainer": {**FAST["trainer"], "isa": "avx2"}})
    run = tmp_path / "run"
    train_run(config, run, progress=False)
    from nlbench.cli import main

    assert main(["reproduce", str(run), "--out", str(tmp_path / "again")]) == 0
    assert f"{config.run_id}: reproduced" in capsys.readouterr().out
    # (a mismatch on the same kernels: test_a_rerun_on_other_kernels_says_so_rather_than_mismatch)
    record = json.loads((run / "record.json").read_text())
    other = {**record["kernels"], "cpu_capability": "AVX512", "onednn_isa": "Intel AVX-512"}
    (run / "record.json").write_text(json.dumps({**record, "top1": 99.0, "kernels": other}))
    assert main(["reproduce", str(run), "--out", str(tmp_path / "third")]) == 1
    out = capsys.readouterr().out
    assert ": other kernels" in out and "top1: record 99.0" in out


# ------------------------------------------------------------------------------------ writing the file


def _write() -> None:
    import tempfile

    if numerics.lacks("avx2"):
        sys.exit(f"{numerics.lacks('avx2')}: the golden figures are AVX2 kernels'")
    os.environ.update(numerics.env_of("avx2"))
    with tempfile.TemporaryDirectory() as tmp:
        figures, record = golden_run(Path(tmp))
    old = json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else None
    if old and old["numerics_version"] == numerics.NUMERICS_VERSION and old["figures"] != figures:
        sys.exit(f"the figures moved but NUMERICS_VERSION is still {numerics.NUMERICS_VERSION}: bump it first")
    from nlbench.io import atomic_write_text

    atomic_write_text(GOLDEN, json.dumps({"numerics_version": numerics.NUMERICS_VERSION, "kernels": record["kernels"],
                                          "config": GOLDEN_CONFIG, "figures": figures}, indent=1) + "\n")
    print(f"wrote {GOLDEN}")


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    _write()
