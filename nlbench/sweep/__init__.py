"""Sweeps: the ablation tables of the paper (``ablations/*.yaml``) run as optuna studies, results as CSV.

    spec      a table file + a profile -> the grid of (row, seed) run configs, validated
    runner    run_sweeps / run_sweep: one worker pool over all tables, dedup by run_id, resume after a kill
              at any moment; made of
      ledger      cells claimed and completed in an RDB storage (SQLite, PostgreSQL across machines)
      heartbeat   a dead process told from a live one (the grace period)
      runs        a run's folder and lock; its record reused or trained
      pool        the workers' loop, in this process or spawned ones
      progress    the results CSVs and the progress bar, written while the sweep goes
    results   the results CSV: one row per finished run, written atomically
    search    random / TPE search over the recipe (lr, weight decay) of one row, with pruning

The names below are imported from their submodule on first use (nlbench.lazy): reading a table (a report)
does not load optuna and the training stack that running one needs.
"""
from nlbench.lazy import lazy_names

__all__ = ["Sweep", "build_sweep", "load_profiles", "load_table", "run_sweep", "run_sweeps"]
__getattr__, __dir__ = lazy_names(__name__, {
    "Sweep": "spec", "build_sweep": "spec", "load_profiles": "spec", "load_table": "spec",
    "run_sweep": "runner", "run_sweeps": "runner",
})
