"""`nlbench eval`: a run's own multi-view test and measurements on given weights (nlbench/training/run.py
evaluate_run), checked against the run that trained them."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from nlbench.cli import main
from nlbench.training import RunConfig, train_run

ROOT = Path(__file__).resolve().parents[1]


def smoke(tmp_path) -> RunConfig:
    return RunConfig.load(ROOT / "configs" / "smoke.yaml").replace(
        data={"cache_dir": str(tmp_path / "cache")}, wandb={"enabled": False})


class KeepTestScores(pl.Callback):
    """The per-video test scores the LightningModule ensembles (what top-1 is computed from)."""

    def on_test_end(self, trainer, pl_module):
        self.predictions = pl_module.test_predictions


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    keep = KeepTestScores()
    record = train_run(smoke(tmp), tmp / "run", progress=False, callbacks=[keep])
    assert record["status"] == "ok"
    return tmp, record, keep.predictions


@pytest.mark.integration
def test_eval_reproduces_the_runs_test_exactly(trained, tmp_path):
    from nlbench.training.run import evaluate_run

    run_tmp, record, (scores, labels, videos) = trained
    run = run_tmp / "run"
    assert main(["eval", str(run / "config.yaml"), "--weights", str(run / "model.pt"), "--out", str(tmp_path / "e"),
                 "--json"]) == 0
    ev = json.loads((tmp_path / "e" / "record.json").read_text())
    for key in ("run_id", "name", "top1", "top5", "per_class", "mean_class_top1", "per_family", "params", "gflops",
                "nonlocal_blocks"):
        assert ev[key] == record[key], key
    # Every field of a trained run's record that is not about training is there.
    training_only = {"val_top1", "val_top5", "steps", "epochs", "curve", "train_clips_per_s", "step_ms",
                     "failed_step", "wandb_dir", "train_wall_s", "traceback"}
    assert set(record) - training_only - set(ev) == set()
    assert ev["split"] == "test" and ev["weights_sha256"] and ev["status"] == "ok"
    # The scores themselves, not only their top-1: bit for bit.
    keep = KeepTestScores()
    evaluate_run(RunConfig.load(run / "config.yaml"), run, tmp_path / "e2", progress=False, callbacks=[keep])
    ours = keep.predictions
    assert torch.equal(ours[0], scores) and torch.equal(ours[1], labels) and torch.equal(ours[2], videos)


@pytest.mark.integration
def test_eval_on_the_val_split(trained, tmp_path):
    run_tmp, record, _ = trained
    run = run_tmp / "run"
    assert main(["eval", str(run / "config.yaml"), "--weights", str(run), "--split", "val", "--out", str(tmp_path)]) == 0
    ev = json.loads((tmp_path / "record.json").read_text())
    # The smoke set has one view per clip: its multi-view test on val is the validation's top-1.
    assert ev["split"] == "val" and ev["top1"] == pytest.approx(record["val_top1"], abs=1e-3)


@pytest.mark.integration
def test_eval_refuses_weights_of_another_model(trained, tmp_path, capsys):
    run_tmp, _, _ = trained
    run = run_tmp / "run"
    code = main(["eval", str(run / "config.yaml"), "model.nl_blocks=1", "--weights", str(run / "model.pt"),
                 "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "model.pt" in err and "nonlocal" in err
    assert main(["eval", str(run / "config.yaml"), "--weights", str(tmp_path / "none.pt")]) == 2
    assert "none.pt" in capsys.readouterr().err
    assert not (tmp_path / "record.json").exists()
