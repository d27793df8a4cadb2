"""Sweeps: the ablation tables of the paper (``ablations/*.yaml``) run as optuna studies, results as CSV.

    spec      a table file + a profile -> the grid of (row, seed) run configs, validated
    runner    run_sweeps / run_sweep: cells claimed in an RDB storage (SQLite, PostgreSQL across machines), one
              worker pool over all tables, dedup by run_id, resume after a kill at any moment
    results   the results CSV: one row per finished run, written atomically
    search    random / TPE search over the recipe (lr, weight decay) of one row, with pruning
"""
from nlbench.sweep.runner import run_sweep, run_sweeps
from nlbench.sweep.spec import Sweep, build_sweep, load_profiles, load_table

__all__ = ["Sweep", "build_sweep", "load_profiles", "load_table", "run_sweep", "run_sweeps"]
