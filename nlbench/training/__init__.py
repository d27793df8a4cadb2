"""Training and evaluation: one run = one model trained and evaluated on one data set, its cost measured.

    config      RunConfig: typed sections, validated at load, run_id hash
    module      the LightningModule (cross-entropy, top-1/5, multi-view test, recipe)
    callbacks   training throughput inside the loop
    tracking    W&B logger (offline by default)
    precise_bn  BN statistics recomputed before evaluation
    run         train_run: build, measure, train, evaluate, write the record
    overhead    Lightning vs a bare PyTorch loop on the same batches

The names below are imported from their submodule on first use (nlbench.lazy): reading a RunConfig (a
sweep's grid, a report) does not load Lightning, W&B or PyAV.
"""
from nlbench.lazy import lazy_names

__all__ = ["ConfigError", "NonFiniteLossError", "RunConfig", "VideoClassifier", "read_record", "train_run"]
__getattr__, __dir__ = lazy_names(__name__, {
    "ConfigError": "config", "RunConfig": "config", "NonFiniteLossError": "module", "VideoClassifier": "module",
    "read_record": "run", "train_run": "run",
})
