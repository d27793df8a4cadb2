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


@pytest.mark.integration
def test_eval_of_a_converted_checkpoint_on_the_embedded_benchmark(tmp_path):
    # A pytorchvideo C2D (its own create_resnet, 1/8 width, 2 classes) converted and evaluated with the paper's
    # protocol replaced by the embedded benchmark: the test's scores are the peer's own softmax on the same clips.
    from nlbench.training.run import build_datamodule, evaluate_run

    peer = _two_class_pytorchvideo_c2d()
    torch.save({"model_state": peer.state_dict()}, tmp_path / "C2D.pyth")
    assert main(["convert", str(tmp_path / "C2D.pyth"), "--from", "pytorchvideo", "--out", str(tmp_path / "c")]) == 0
    synthetic = ["data.source=synthetic", "data.frames=8", "data.size=32", "data.split_sizes=[48,16,16]",
                 f"data.cache_dir={tmp_path / 'cache'}", "data.num_workers=0", "trainer.accelerator=cpu",
                 "measure.repeats=1", "measure.warmup=0", "wandb.enabled=false"]
    config = RunConfig.load(tmp_path / "c" / "config.yaml", synthetic)
    keep = KeepTestScores()
    record = evaluate_run(config, tmp_path / "c", tmp_path / "e", progress=False, callbacks=[keep])
    assert json.loads((tmp_path / "e" / "record.json").read_text())["top1"] == record["top1"]
    scores, labels, videos = keep.predictions
    theirs, truth = [], []
    with torch.no_grad():
        for clips, y, _ in build_datamodule(config).test_dataloader():
            theirs.append(peer.float()(clips).softmax(1))  # one view a clip: its softmax is the video's score
            truth.append(y)
    theirs, truth = torch.cat(theirs), torch.cat(truth)
    assert torch.equal(labels, truth) and torch.equal(videos, torch.arange(len(truth)))
    torch.testing.assert_close(scores.float(), theirs, rtol=1e-4, atol=1e-5)
    assert record["top1"] == round(100 * (theirs.argmax(1) == truth).double().mean().item(), 4)
    assert record["params"] == sum(p.numel() for p in peer.parameters())


def _two_class_pytorchvideo_c2d():
    from tests import test_convert

    test_convert.pytorchvideo_model("c2d")  # imports pytorchvideo the way the logits tests do (or skips)
    from pytorchvideo.models import resnet

    model = resnet.create_resnet(stage1_pool=torch.nn.MaxPool3d, head_pool_kernel_size=(4, 1, 1), stem_dim_out=8,
                                 model_num_class=2, stem_conv_kernel_size=(1, 7, 7),
                                 stage_conv_a_kernel_size=((1, 1, 1),) * 4)
    test_convert.randomise(model.double(), seed=5)
    return model.float().eval()


@pytest.mark.integration
def test_the_curve_s_group_score_is_the_val_split_s_group_score(trained, tmp_path):
    """design 3 (smoke): every curve point holds the group score of the val quadruples; the last one is what
    the multi-view test path gives on the val split with the trained weights."""
    from nlbench.training.run import evaluate_run

    run_tmp, record, _ = trained
    run = run_tmp / "run"
    assert all(p["val_group_top1"] is not None for p in record["curve"])
    ev = evaluate_run(RunConfig.load(run / "config.yaml"), run, tmp_path / "e", split="val", progress=False)
    assert ev["top1"] == record["curve"][-1]["val_top1"]
    assert ev["group_top1"] == record["curve"][-1]["val_group_top1"]
