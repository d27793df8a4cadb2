"""Training runs: config validation, the record, determinism, multi-view test, precise BN, failures, DDP."""
from __future__ import annotations

import itertools
import json
import math
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

from nlbench.cli import main
from nlbench.data import CLASS_NAMES, FAMILIES
from nlbench.training import ConfigError, RunConfig, VideoClassifier, train_run
from nlbench.training.config import RecipeSection
from nlbench.training.run import build_datamodule
from nlbench.training.precise_bn import recompute_bn_stats
from nlbench.training.tracking import wandb_mode

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"


def smoke(tmp_path, **sections) -> RunConfig:
    """The smoke profile, tiny data in a private cache, W&B offline into the run folder."""
    base = RunConfig.load(SMOKE)
    sections.setdefault("data", {})
    sections["data"] = {"cache_dir": str(tmp_path / "cache"), **sections["data"]}
    return base.replace(**sections)


# ------------------------------------------------------------------------------------------ config


def test_every_shipped_config_loads():
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        config = RunConfig.load(path, ["data.root=/data/kinetics"] if path.stem == "paper" else [])
        assert config.run_id == RunConfig.from_dict(config.to_dict()).run_id


def test_run_id_ignores_name_and_logging_but_not_results(tmp_path):
    config = smoke(tmp_path)
    assert config.replace(name="x", wandb={"project": "other"}, measure={"repeats": 9}).run_id == config.run_id
    assert config.replace(seed=1).run_id != config.run_id
    assert config.replace(model={"nl_blocks": 1}).run_id != config.run_id
    assert config.replace(recipe={"lr": 0.02}).run_id != config.run_id
    # the same architecture spelled two ways is one run; NL knobs of a model without NL blocks do not matter
    one = config.replace(model={"nl_blocks": 1})
    assert one.replace(model={"nl_stage": "res4"}).run_id == one.run_id
    assert one.replace(model={"nl_blocks": [["res4", 4]]}).run_id == one.run_id
    assert one.replace(model={"nl_stage": "res3"}).run_id != one.run_id
    assert config.replace(model={"instantiation": "gaussian"}).run_id == config.run_id
    assert one.replace(model={"instantiation": "gaussian"}).run_id != one.run_id
    # knobs left None are the variant's preset (released: pool before phi/g), C/2 is ratio 0.5
    assert one.replace(model={"inner_ratio": 0.5, "subsample_order": "before"}).run_id == one.run_id
    assert one.replace(model={"subsample_order": "after"}).run_id != one.run_id
    assert one.replace(model={"inner_ratio": 0.25}).run_id != one.run_id
    assert one.replace(model={"variant": "paper"}).run_id != one.run_id


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"modle": {}}, "unknown key modle"),
        ({"model": {"dpth": 50}}, "unknown key model.dpth"),
        ({"model": {"depth": "fifty"}}, "model.depth='fifty' has the wrong type"),
        ({"model": {"depth": 34}}, "depth=34 is not allowed"),
        ({"model": {"nl_blocks": 1, "nl_stage": "res6"}}, "nl_stage='res6' is not allowed"),
        ({"recipe": {"lr": 0}}, "recipe.lr=0 is not allowed"),
        ({"recipe": {"epochs": True}}, "recipe.epochs=True has the wrong type"),
        ({"recipe": {"schedule": "poly"}}, "recipe.schedule='poly' is not allowed"),
        ({"data": {"source": "video"}}, "data.root is required"),
        ({"trainer": {"precision": "8-bit"}}, "trainer.precision='8-bit' is not allowed"),
        ({"trainer": {"memory_format": "nhwc"}}, "trainer.memory_format='nhwc' is not allowed"),
        ({"recipe": {"bn_weight_decay": -1e-4}}, "recipe.bn_weight_decay=-0.0001 is not allowed"),
        ({"recipe": {"weight_decay": -1e-4}}, "recipe.weight_decay=-0.0001 is not allowed"),
        ({"recipe": {"warmup_steps": -1}}, "recipe.warmup_steps=-1 is not allowed; expected an int >= 0"),
        ({"recipe": {"precise_bn_batches": -1}}, "recipe.precise_bn_batches=-1 is not allowed"),
        ({"trainer": {"accelerator": "tpu"}}, "expected auto, cpu, gpu, cuda or mps"),
        ({"trainer": {"precision": "8"}}, "expected 32-true, 32, 16-mixed, bf16-mixed or 64-true"),
    ],
)
def test_bad_config_one_line_error(data, expected):
    with pytest.raises(ConfigError) as err:
        RunConfig.from_dict(data, "my.yaml")
    message = str(err.value)
    assert message.startswith("my.yaml: ") and expected in message and "\n" not in message


def test_overrides_and_cli_errors(tmp_path, capsys):
    config = RunConfig.load(SMOKE, ["model.nl_blocks=5", "recipe.lr=0.5"])
    assert config.model.nl_blocks == 5 and config.recipe.lr == 0.5
    with pytest.raises(ConfigError, match="unknown key model.nl_blocks_extra"):
        RunConfig.load(SMOKE, ["model.nl_blocks=5", "model.nl_blocks_extra=1"])
    out = tmp_path / "run"
    for argv, expected in [
        (["train", str(SMOKE), "model.dpth=3"], "unknown key model.dpth"),
        (["train", str(SMOKE), "recipe.lr"], "is not KEY=VALUE"),
        (["train", str(tmp_path / "missing.yaml")], "no such config file"),
        # valid as a config, refused by train_run: still before anything is written
        (["train", str(SMOKE), "data.source=video", f"data.root={tmp_path / 'nowhere'}"], "no such folder"),
    ]:
        assert main([*argv, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("nlbench: error: ") and expected in err and "\n" not in err
        assert not out.exists(), argv  # a config error leaves no run folder behind


def test_yaml_1_2_floats_are_numbers(tmp_path):
    # PyYAML alone reads 1e-3 and 1.0e30 as strings (YAML 1.1); a researcher's "lr: 1e-3" must be a number
    path = tmp_path / "run.yaml"
    path.write_text("recipe: {lr: 1e-3, weight_decay: 5e-5, momentum: 0.9}\nseed: 3\n")
    config = RunConfig.load(path, ["recipe.gamma=1.0e-1"])
    assert (config.recipe.lr, config.recipe.weight_decay, config.recipe.gamma, config.seed) == (0.001, 5e-5, 0.1, 3)
    assert RunConfig.load(path, ["name=1e3x"]).name == "1e3x"  # not a number: text as before
    with pytest.raises(ConfigError, match="recipe.lr='fast' has the wrong type"):
        RunConfig.load(path, ["recipe.lr=fast"])


def test_every_config_key_is_listed_with_what_it_allows():
    from nlbench.training.config import config_keys

    lines = config_keys()
    keys = [line.split()[0] for line in lines]
    sections = {name: type(getattr(RunConfig(), name)) for name in ("model", "data", "recipe", "trainer", "measure", "wandb")}
    assert keys == ["seed", "name", *(f"{s}.{k}" for s, cls in sections.items() for k in cls.model_fields)]
    text = "\n".join(lines)
    assert "recipe.schedule  step, cosine, onecycle or constant  (default 'step')" in text
    assert "data.batch_size  a positive int  (default 16)" in text
    assert "model.scale  false, true or a positive float or null" in text


def test_wandb_mode_offline_unless_configured(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert wandb_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode("auto") == "disabled"
    assert wandb_mode("offline") == "offline"


# ------------------------------------------------------------------------------------- whole runs


@pytest.mark.integration
def test_train_run_writes_a_complete_record(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    config = smoke(tmp_path, model={"nl_blocks": 1}, recipe={"max_steps": 6})
    record = train_run(config, tmp_path / "run", progress=False)
    on_disk = json.loads((tmp_path / "run" / "record.json").read_text())
    assert on_disk["run_id"] == record["run_id"] == config.run_id and record["status"] == "ok"
    for key in ("params", "gflops", "latency_ms", "latency_eval_ms", "train_clips_per_s", "step_ms", "peak_mem_mb",
                "wall_s", "val_top1", "top1", "machine", "per_class", "per_family", "mean_class_top1", "curve",
                "code_version", "packages", "nonlocal_blocks"):
        assert on_disk[key] is not None, key
    # 2 classes: top-5 is not computed (it would be 100 % for any model).
    assert record["top5"] is None and record["val_top5"] is None and 0 <= record["top1"] <= 100
    model = config.model.as_model_config(len(CLASS_NAMES)).build()
    assert [b["name"] for b in record["nonlocal_blocks"]] == list(model.placed_blocks())
    # Per family: the accuracy over that family's test clips (4 of each of the 4 families in the smoke set,
    # 2 per class), so each is a multiple of 25 % and, the families being balanced, they average to top-1.
    families = build_datamodule(config).test_families()
    assert list(record["per_family"]) == list(dict.fromkeys(families)) == list(FAMILIES)
    assert all(v % 25 == 0 for v in record["per_family"].values())
    assert statistics.fmean(record["per_family"].values()) == pytest.approx(record["top1"])
    assert statistics.fmean(record["per_class"].values()) == pytest.approx(record["mean_class_top1"], abs=1e-4)
    assert record["packages"]["torch"] == torch.__version__ and set(record["code_version"]) == {"commit", "dirty"}
    assert record["params"] == sum(p.numel() for p in model.parameters())
    assert record["gflops"] > 0 and record["unsupported_ops"] == {}
    assert record["steps"] == 6 and list(record["per_class"]) == list(build_datamodule(config).class_names) == list(CLASS_NAMES)
    assert RunConfig.load(tmp_path / "run" / "config.yaml").run_id == config.run_id
    assert (tmp_path / "run" / "model.pt").is_file()
    # W&B offline: a local run folder that `wandb sync` can upload, and no key anywhere in it.
    offline = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and list(offline[0].glob("run-*.wandb"))


@pytest.mark.integration
def test_same_seed_same_metrics_and_weights(tmp_path):
    config = smoke(tmp_path, recipe={"max_steps": 3}, measure={"enabled": False}, wandb={"enabled": False})
    a = train_run(config, tmp_path / "a", progress=False)
    b = train_run(config, tmp_path / "b", progress=False)
    assert (a["val_top1"], a["top1"], a["per_class"]) == (b["val_top1"], b["top1"], b["per_class"])
    wa, wb = torch.load(tmp_path / "a" / "model.pt"), torch.load(tmp_path / "b" / "model.pt")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    train_run(config.replace(seed=1), tmp_path / "c", progress=False)
    wc = torch.load(tmp_path / "c" / "model.pt")
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


@pytest.mark.integration
def test_cost_is_measured_once_per_distinct_model(tmp_path, monkeypatch):
    from nlbench.training import run

    measured = []
    original = run._measure
    monkeypatch.setattr(run, "_measure", lambda model, config, device: measured.append(config.run_id) or
                        original(model, config, device))
    config = smoke(tmp_path, recipe={"max_steps": 2}, wandb={"enabled": False})
    runs = tmp_path / "runs"
    first = train_run(config, runs / "a", progress=False)
    second = train_run(config.replace(seed=1), runs / "b", progress=False)  # another seed: the same model
    assert measured == [config.run_id] and first["latency_ms"] > 0
    costs = ("params", "gflops", "latency_ms", "latency_eval_ms", "peak_mem_mb", "timings_ms")
    assert {k: second[k] for k in costs} == {k: first[k] for k in costs}
    other = config.replace(model={"nl_blocks": 1})
    third = train_run(other, runs / "c", progress=False)
    assert measured == [config.run_id, other.run_id] and third["params"] > first["params"]
    train_run(config.replace(measure={"repeats": 2}), runs / "d", progress=False)  # measured otherwise: again
    assert len(measured) == 3


@pytest.mark.integration
def test_frozen_bn_keeps_statistics_and_affine_through_validations(tmp_path):
    from nlbench.training.run import build_model

    # val_points: a validation in the middle of training, after which Lightning calls train() again
    from nlbench.ops import NonLocalBlock

    config = smoke(tmp_path, model={"nl_blocks": 1}, recipe={"max_steps": 4, "val_points": 2, "freeze_bn": True},
                   measure={"enabled": False}, wandb={"enabled": False})
    model = build_model(config, 2)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    blocks = [name for name, m in model.named_modules() if isinstance(m, NonLocalBlock)]
    bn = [name for name, m in model.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
          and not any(name.startswith(b + ".") for b in blocks)]
    is_bn = [k for k in initial if k.rsplit(".", 1)[0] in bn]
    block_gamma = f"{blocks[0]}.bn.weight"
    assert initial[block_gamma].eq(0).all()  # W_z's BN starts at gamma 0: frozen there, the block would be off
    assert any(k.endswith("running_mean") for k in is_bn) and any(k.endswith("weight") for k in is_bn)
    for freeze, run in ((True, "frozen"), (False, "trained")):
        train_run(config.replace(recipe={"freeze_bn": freeze}), tmp_path / run, progress=False)
        final = torch.load(tmp_path / run / "model.pt")
        same = {k: torch.equal(initial[k], final[k]) for k in is_bn}
        assert all(same.values()) == freeze, [k for k, v in same.items() if v != freeze][:3]
        assert not torch.equal(initial["conv1.weight"], final["conv1.weight"])  # the rest trains either way
        assert not torch.equal(initial[block_gamma], final[block_gamma])  # and so does the non-local block


def test_config_combinations_that_cannot_train_are_refused():
    for data, needle in [
        ({"recipe": {"freeze_bn": True, "precise_bn_batches": 2}}, "recipe.precise_bn_batches=2 is not allowed"),
        ({"recipe": {"freeze_bn": True}, "model": {"zero_init_residual": True}}, "model.zero_init_residual=true"),
        ({"data": {"std": [0.1, 0.2, "x"]}}, "has the wrong type; expected 3 positive numbers (R, G, B)"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(needle)):
            RunConfig.from_dict(data, "my.yaml")
    # what means "off" stays allowed: 0 threads (torch's default), no clipping, a section with no keys left
    config = RunConfig.from_dict({"trainer": {"threads": 0}, "recipe": {"grad_clip": 0}, "measure": None})
    assert (config.trainer.threads, config.recipe.grad_clip, config.measure) == (0, 0.0, RunConfig().measure)
    assert RunConfig().model.width == "small"  # a run's default; a model's (nlbench profile) is the paper's


@pytest.mark.integration
def test_nan_loss_fails_the_run_with_its_step(tmp_path, capsys):
    """A checkpoint with a NaN weight makes the loss NaN at the first step: the run stops, the record says
    failed with the step, the CLI exits non-zero, and no weights are saved."""
    model = smoke(tmp_path).model.as_model_config(len(CLASS_NAMES)).build()
    state = model.state_dict()
    state["conv1.weight"][0, 0, 0, 0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pt")
    config_path = tmp_path / "nan.yaml"
    config_path.write_text(smoke(tmp_path, model={"init_from": str(tmp_path / "nan.pt")},
                                 wandb={"enabled": False}, measure={"enabled": False}).to_yaml())
    assert main(["train", str(config_path), "--out", str(tmp_path / "run")]) == 1
    assert "failed: loss is nan at step 0" in capsys.readouterr().err
    record = json.loads((tmp_path / "run" / "record.json").read_text())
    assert record["status"] == "failed" and record["failed_step"] == 0 and "nan" in record["reason"]
    assert not (tmp_path / "run" / "model.pt").exists()


@pytest.mark.integration
def test_checkpoint_of_another_architecture_is_a_config_error(tmp_path, capsys):
    i3d = smoke(tmp_path, model={"arch": "i3d_3x3x3"}).model.as_model_config(len(CLASS_NAMES)).build()
    torch.save(i3d.state_dict(), tmp_path / "i3d.pt")
    config_path = tmp_path / "c2d.yaml"
    config_path.write_text(smoke(tmp_path, model={"init_from": str(tmp_path / "i3d.pt")}).to_yaml())
    assert main(["train", str(config_path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nlbench: error: ") and "i3d.pt" in err and "\n" not in err
    assert not (tmp_path / "run").exists()  # nothing half-written


@pytest.mark.integration
def test_nl_model_starts_from_a_trained_baseline(tmp_path):
    """The authors' practice: an NL model initialised from a trained C2D keeps the C2D's function (the NL
    blocks are identity at init), so their outputs agree before any NL training."""
    base = smoke(tmp_path, recipe={"max_steps": 2}, measure={"enabled": False}, wandb={"enabled": False})
    train_run(base, tmp_path / "base", progress=False)
    from nlbench.training.run import build_model

    nl_config = base.replace(model={"nl_blocks": 5, "init_from": str(tmp_path / "base" / "model.pt")})
    nl = build_model(nl_config, len(CLASS_NAMES))
    c2d = base.model.as_model_config(len(CLASS_NAMES)).build()
    c2d.load_state_dict(torch.load(tmp_path / "base" / "model.pt"))
    x = torch.randn(2, 3, 16, 32, 32)
    nl.eval(), c2d.eval()
    torch.testing.assert_close(nl(x), c2d(x), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------- module pieces


class _Views(torch.utils.data.Dataset):
    """Test views: video v has views 2v and 2v+1, label v % 3."""

    def __init__(self, n_videos: int = 6):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(2 * n_videos, 4, generator=g)
        self.n = n_videos

    def __len__(self):
        return 2 * self.n

    def __getitem__(self, i):
        return self.x[i], (i // 2) % 3, i // 2


def test_multiview_test_averages_softmax_scores_per_video():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    module = VideoClassifier(model, RecipeSection(), total_steps=1)
    data = _Views()
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    result = trainer.test(module, DataLoader(data, batch_size=5), verbose=False)[0]
    # float64 reference: mean of the two views' softmax, then top-1 against the video's label
    with torch.no_grad():
        p = torch.softmax(model(data.x).double(), dim=1).reshape(data.n, 2, 3).mean(1)
    labels = torch.arange(data.n) % 3
    expected = (p.argmax(1) == labels).double().mean().item() * 100
    assert result["test/top1"] == pytest.approx(expected)
    scores, video_labels, video_ids = module.test_predictions
    torch.testing.assert_close(scores, p)
    assert torch.equal(video_labels, labels) and torch.equal(video_ids, torch.arange(data.n))


def test_precise_bn_equals_the_true_batch_statistics():
    torch.manual_seed(0)
    bn = nn.BatchNorm1d(3)
    batches = [(torch.randn(8, 3) * 2 + 5, torch.zeros(8)) for _ in range(4)]
    bn.running_mean.fill_(100.0)
    assert recompute_bn_stats(bn, batches, num_batches=4) == 4
    x = torch.cat([b[0] for b in batches]).double()
    torch.testing.assert_close(bn.running_mean.double(), x.mean(0), rtol=1e-5, atol=1e-5)
    # cumulative average of per-batch unbiased variances
    per_batch = torch.stack([b[0].double().var(0, unbiased=True) for b in batches]).mean(0)
    torch.testing.assert_close(bn.running_var.double(), per_batch, rtol=1e-5, atol=1e-5)
    assert bn.momentum == 0.1



@torch.no_grad()
def _hand_written_precise_bn(model, loader, num_batches):
    """The loop precise BN was before it used torch's update_bn: the reference it must still equal."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    momenta = [bn.momentum for bn in bns]
    model.train()
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    used = 0
    for batch in itertools.islice(loader, num_batches):
        if batch is not None:
            model(batch[0])
            used += 1
    for bn, momentum in zip(bns, momenta):
        bn.momentum = momentum
    return used


def test_precise_bn_gives_what_the_hand_written_loop_gave():
    def make():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv3d(3, 4, 3), nn.BatchNorm3d(4, momentum=0.3), nn.ReLU(), nn.Conv3d(4, 4, 1),
                             nn.BatchNorm3d(4, track_running_stats=False), nn.BatchNorm3d(4)).eval()

    torch.manual_seed(1)
    batches = [(torch.randn(2, 3, 4, 6, 6) * 3 + 1, torch.zeros(2)) for _ in range(5)]
    batches.insert(1, None)  # a batch of unreadable videos: counted, skipped
    old, new = make(), make()
    assert _hand_written_precise_bn(old, batches, 4) == recompute_bn_stats(new, batches, num_batches=4) == 3
    assert not new.training  # the mode it had
    for (name, a), b in zip(old.state_dict().items(), new.state_dict().values()):
        assert torch.equal(a, b), name  # bit for bit
    assert [m.momentum for m in new.modules() if isinstance(m, nn.BatchNorm3d)] == [0.3, 0.1, 0.1]


def test_step_schedule_and_no_weight_decay_on_bn():
    recipe = RecipeSection(lr=0.01, schedule="step", milestones=(0.375, 0.75), gamma=0.1, weight_decay=1e-4)
    model = nn.Sequential(nn.Conv1d(2, 2, 1), nn.BatchNorm1d(2))
    module = VideoClassifier(model, recipe, total_steps=400)
    opt_cfg = module.configure_optimizers()
    opt, sched = opt_cfg["optimizer"], opt_cfg["lr_scheduler"]["scheduler"]
    assert [g["weight_decay"] for g in opt.param_groups] == [1e-4, 0.0]
    assert len(opt.param_groups[1]["params"]) == 2  # BN weight and bias
    lrs = []
    for _ in range(400):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[149] == pytest.approx(0.01) and lrs[150] == pytest.approx(0.001) and lrs[300] == pytest.approx(1e-4)




def test_train_throughput_skips_warmup_and_validation_pauses(monkeypatch):
    from nlbench.training import callbacks

    clock = iter([0.0, 1.0,  # step 0 (skipped): 1 s
                  1.5, 2.5,  # step 1: 1 s, batch end 1.5 s after the last
                  2.5, 4.5,  # step 2: 2 s, end 2 s after
                  100.0, 101.0])  # after a validation pause: a 1 s step, no interval
    monkeypatch.setattr(callbacks.time, "perf_counter", lambda: next(clock))
    monitor = callbacks.TrainThroughput(batch_size=8, skip=1)
    module = VideoClassifier(nn.Linear(2, 2), RecipeSection(), total_steps=1)
    monitor.on_train_epoch_start(None, module)
    for step in range(4):
        if step == 3:
            monitor.on_validation_start(None, module)
        monitor.on_train_batch_start(None, module, None, step)
        monitor.on_train_batch_end(None, module, None, None, step)
    summary = monitor.summary()
    assert summary["step_ms"] == pytest.approx(1000.0)  # median of 1, 2, 1 s
    assert summary["train_clips_per_s"] == pytest.approx(8 / 1.75)  # intervals 1.5 and 2 s



@pytest.mark.integration
def test_measure_overhead_times_the_three_loops(tmp_path, monkeypatch):
    from nlbench.training.overhead import measure_overhead

    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    config = smoke(tmp_path, measure={"enabled": False})
    out = measure_overhead(config, steps=8, rounds=2, skip=5)
    rates = out["clips_per_s"]
    assert set(rates) == {"bare", "lightning", "lightning_wandb"} and all(r > 0 for r in rates.values())
    assert all(len(v) == 2 for v in out["all_rounds"].values())  # one figure per round, medians of them
    assert rates["bare"] == statistics.median(out["all_rounds"]["bare"])
    for kind in ("lightning", "lightning_wandb"):
        assert out["overhead_pct"][kind] == pytest.approx(100 * (rates["bare"] / rates[kind] - 1))
    assert (out["steps"], out["batch_size"], out["input"]) == (8, 8, "16x32x32")
    with pytest.raises(ValueError, match="steps=7 is not allowed"):
        measure_overhead(config, steps=7, skip=5)


def test_topk_correct_agrees_with_torchmetrics():
    from torchmetrics.functional.classification import multiclass_accuracy

    from nlbench.training.module import topk_correct

    torch.manual_seed(0)
    logits, labels = torch.randn(1000, 12), torch.randint(0, 12, (1000,))
    for k, hit in zip((1, 5), topk_correct(logits, labels, (1, 5))):
        theirs = multiclass_accuracy(logits, labels, num_classes=12, top_k=k, average="micro")
        assert float(hit.mean()) == pytest.approx(float(theirs), abs=1e-6), k


def _lrs(recipe: RecipeSection, total: int) -> list[float]:
    module = VideoClassifier(nn.Sequential(nn.Linear(2, 2)), recipe, total_steps=total)
    opt_cfg = module.configure_optimizers()
    opt, sched = opt_cfg["optimizer"], opt_cfg["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


@pytest.mark.parametrize("total", [4, 400])
def test_cosine_and_step_schedules_are_torchs_own(total):
    # torch's schedulers update the lr recursively, which differs from our closed form in the last bits
    # after a few hundred steps: the same curve to 1e-12, not bit for bit (why module.py keeps a LambdaLR).
    def torch_lrs(make):
        opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.01)
        sched, lrs = make(opt), []
        for _ in range(total):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return lrs

    cosine = torch_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=total))
    assert _lrs(RecipeSection(schedule="cosine"), total) == pytest.approx(cosine, rel=1e-12, abs=1e-15)
    milestones = [math.ceil(m * total) for m in (0.375, 0.75)]
    step = torch_lrs(lambda o: torch.optim.lr_scheduler.MultiStepLR(o, milestones, gamma=0.1))
    assert _lrs(RecipeSection(schedule="step", milestones=(0.375, 0.75)), total) == pytest.approx(step, rel=1e-12)


def test_onecycle_schedule_and_warmup():
    total, lr = 200, 0.01
    lrs = np.array(_lrs(RecipeSection(schedule="onecycle", lr=lr), total)) / lr
    peak = 30  # 15 % of training
    assert lrs[0] == pytest.approx(0.04) and lrs[peak] == pytest.approx(1.0) and lrs.argmax() == peak
    assert np.all(np.diff(lrs[: peak + 1]) > 0) and np.all(np.diff(lrs[peak:]) < 0)
    # linear up, then cosine down to 1 %: halfway down the cosine is halfway between 1 and 0.01
    np.testing.assert_allclose(lrs[15], 0.04 + 0.96 * 0.5, rtol=1e-12)
    np.testing.assert_allclose(lrs[(peak + total) // 2], 0.01 + 0.99 * 0.5, rtol=1e-12)
    assert lrs[-1] == pytest.approx(0.01, abs=1e-3)
    # warm-up: (step + 1) / warmup_steps of the schedule's value, then the schedule from the start
    warm = np.array(_lrs(RecipeSection(schedule="cosine", lr=lr, warmup_steps=10), total)) / lr
    np.testing.assert_allclose(warm[:10], np.arange(1, 11) / 10, rtol=1e-12)
    np.testing.assert_allclose(warm[10:], 0.5 * (1 + np.cos(np.pi * np.arange(190) / 190)), rtol=1e-12)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_fused_optimizer_is_the_textbook_update(optimizer):
    """The module's (fused) optimiser takes the same steps as torch's per-tensor loop."""
    torch.manual_seed(0)
    recipe = RecipeSection(optimizer=optimizer, lr=0.05, weight_decay=0.01, schedule="constant")
    model = nn.Sequential(nn.Conv3d(3, 4, 3), nn.BatchNorm3d(4), nn.Flatten(), nn.LazyLinear(5))
    model(torch.randn(2, 3, 4, 5, 5))
    reference = [p.detach().clone().requires_grad_() for p in model.parameters()]
    opt = VideoClassifier(model, recipe, total_steps=10).configure_optimizers()["optimizer"]
    assert opt.defaults.get("fused")
    decay, no_decay = [reference[i] for i in (0, 1, 4, 5)], [reference[i] for i in (2, 3)]
    groups = [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}]
    ref_opt = (
        torch.optim.SGD(groups, lr=0.05, momentum=0.9, nesterov=True, foreach=False)
        if optimizer == "sgd" else torch.optim.AdamW(groups, lr=0.05, foreach=False)
    )
    for _ in range(5):
        grads = [torch.randn_like(p) for p in reference]
        for p, q, g in zip(model.parameters(), reference, grads):
            p.grad, q.grad = g.clone(), g.clone()
        opt.step()
        ref_opt.step()
    for p, q in zip(model.parameters(), reference):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-5, atol=1e-6)


def test_channels_last_module_computes_the_same_logits():
    from nlbench.models import build_model

    torch.manual_seed(0)
    model = build_model(50, "i3d_3x1x1", nl_blocks=5, width="small", num_classes=7).eval()
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        want = model(x)
        module = VideoClassifier(model, RecipeSection(), total_steps=1, channels_last=True)
        got = module(x)
    assert module.model.conv1.weight.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------------- DDP


@pytest.mark.integration
@pytest.mark.parametrize("block", [None, "ddpblock:Scale"])
def test_ddp_two_cpu_processes(tmp_path, monkeypatch, block):
    """`nlbench train` with trainer.devices=2 and the ddp strategy: Lightning starts a second process, both
    train with gloo on the CPU, rank 0 writes the record. Also with a researcher's block named by import path
    from the directory the command runs in: the second process finds it too."""
    (tmp_path / "ddpblock.py").write_text(
        "import torch\nfrom torch import nn\nclass Scale(nn.Module):\n    def __init__(self, c):\n"
        "        super().__init__()\n        self.w = nn.Parameter(torch.zeros(c, 1, 1, 1))\n"
        "    def forward(self, x):\n        return x + self.w * x\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # to build the config here, as the command will from its cwd
    model = {} if block is None else {"nl_blocks": 1, "block": block}
    config = smoke(tmp_path, trainer={"devices": 2, "strategy": "ddp", "accelerator": "cpu"}, model=model,
                   recipe={"max_steps": 2}, wandb={"enabled": False}, measure={"enabled": False})
    path = tmp_path / "ddp.yaml"
    path.write_text(config.to_yaml())
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "nlbench.cli", "train", str(path), "--out", str(tmp_path / "run"), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env,
                          cwd=ROOT if block is None else tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads((tmp_path / "run" / "record.json").read_text())
    assert record["status"] == "ok" and record["machine"]["devices"] == "2" and record["machine"]["strategy"] == "ddp"
    assert "gloo" in proc.stderr or "distributed_backend=gloo" in proc.stdout + proc.stderr
    assert "litlogger" not in proc.stdout + proc.stderr  # Lightning's advertisement, filtered
    assert np.isfinite(record["top1"])
    if block is not None:
        assert [b["name"] for b in record["nonlocal_blocks"]] == ["layer3.nonlocal4"]


def _gather_on_rank(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        scores = torch.full((3 + rank * 2, 4), float(rank))  # rank 0 holds 3 videos, rank 1 holds 5
        ids = torch.arange(3 + rank * 2) + 10 * rank
        gathered = VideoClassifier._gather(scores), VideoClassifier._gather(ids)
        torch.save(gathered, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.integration
def test_test_predictions_gather_uneven_ranks_in_rank_order(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_gather_on_rank, args=(port, str(tmp_path / "g")), nprocs=2)
    for rank in (0, 1):
        scores, ids = torch.load(tmp_path / f"g.{rank}")
        assert scores.shape == (8, 4) and scores[:3].eq(0).all() and scores[3:].eq(1).all()
        assert ids.tolist() == [0, 1, 2, 10, 11, 12, 13, 14]  # every rank gets all of them, in rank order


@pytest.mark.integration
def test_train_run_on_real_video_files(tmp_path):
    """The video path end to end: the synthetic set exported as H.264 files in the Kinetics layout, decoded
    with PyAV, trained and tested with multi-view averaging (2 clips x 1 crop per video)."""
    from nlbench.data import SyntheticConfig, export_synthetic

    root = tmp_path / "kinetics"
    export_synthetic(root, SyntheticConfig(frames=16, size=32, split_sizes=(24, 16, 16)))
    config = smoke(tmp_path, data={"source": "video", "root": str(root), "frames": 16, "sampling_rate": 1,
                                    "num_clips": 2, "num_crops": 1, "size": 32, "batch_size": 4,
                                    "eval_batch_size": 4},
                   recipe={"max_steps": 2}, measure={"enabled": False}, wandb={"enabled": False})
    record = train_run(config, tmp_path / "run", progress=False)
    assert record["status"] == "ok", record.get("reason")
    assert 0 <= record["top1"] <= 100 and list(record["per_class"]) == ["same", "different"]


def test_code_version_is_dirty_for_code_not_for_results(tmp_path):
    from nlbench.training.provenance import code_version

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    (tmp_path / "pkg").mkdir()
    (tmp_path / "results").mkdir()
    (tmp_path / "pkg" / "code.py").write_text("x = 1\n")
    (tmp_path / "results" / "t.csv").write_text("a\n1\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    clean = code_version(tmp_path / "pkg")
    assert len(clean["commit"]) == 40 and clean["dirty"] is False
    (tmp_path / "results" / "t.csv").write_text("a\n2\n")  # a sweep updating its committed results
    (tmp_path / "notes.txt").write_text("untracked")
    assert code_version(tmp_path / "pkg")["dirty"] is False
    (tmp_path / "pkg" / "code.py").write_text("x = 2\n")
    assert code_version(tmp_path / "pkg")["dirty"] is True
    assert code_version(tmp_path / "elsewhere") == {"commit": None, "dirty": None}  # not a checkout
