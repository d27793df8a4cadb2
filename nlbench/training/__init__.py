"""Training and evaluation: one run = one model trained and evaluated on one data set, its cost measured.

    config      RunConfig: typed sections, validated at load, run_id hash
    module      the LightningModule (cross-entropy, top-1/5, multi-view test, recipe)
    callbacks   training throughput inside the loop
    tracking    W&B logger (offline by default)
    precise_bn  BN statistics recomputed before evaluation
    run         train_run: build, measure, train, evaluate, write the record
    overhead    Lightning vs a bare PyTorch loop on the same batches
"""
from nlbench.training.config import ConfigError, RunConfig
from nlbench.training.module import NonFiniteLossError, VideoClassifier
from nlbench.training.run import read_record, train_run

__all__ = ["ConfigError", "NonFiniteLossError", "RunConfig", "VideoClassifier", "read_record", "train_run"]
