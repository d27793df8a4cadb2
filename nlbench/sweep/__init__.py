"""Sweeps: the ablation tables of the paper (``ablations/*.yaml``) run as optuna studies, results as CSV.

    spec      a table file + a profile -> the grid of (row, seed) run configs, validated
    runner    run_sweep: optuna GridSampler over the grid, RDB storage, dedup by run_id, resume, workers
    results   the results CSV: one row per finished run, written atomically
    search    random / TPE search over the recipe (lr, weight decay) of one row, with pruning
"""
from nlbench.sweep.runner import run_sweep
from nlbench.sweep.spec import Sweep, build_sweep, load_profiles, load_table

__all__ = ["Sweep", "build_sweep", "load_profiles", "load_table", "run_sweep"]
