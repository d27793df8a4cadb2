"""Training clips/s on an exported synthetic set read as video, against the same run on the cached tensors.

    python -m benchmarks.video_training ROOT [--config configs/tiny.yaml] [--steps 80] [--rounds 3]
                                        [--workers 1] [--out results/bench/video_training.json]

ROOT is an ``nlbench data export-synthetic`` folder. Both runs train the config's model for ``--steps`` steps
with ``--workers`` loader workers on the same clips: the video run decodes ROOT's files, the cached run reads
the synthetic generator's frames for the export's own config from a memory-mapped cache. The figure is the
training callback's clips/s (steady state, warm-up steps left out), the median of ``--rounds`` rounds that
alternate the two so a neighbour's load falls on both. Cost measurement and W&B are off and validation runs
once, at the end: the rate leaves validation out, and none of them depends on the source.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import warnings
from pathlib import Path

from nlbench.data.export import read_export_config
from nlbench.io import atomic_write_text
from nlbench.training import RunConfig, train_run


def configs(root: Path, base: RunConfig, steps: int, workers: int, cache_dir: Path) -> dict[str, RunConfig]:
    export = read_export_config(root)
    if export is None:
        raise SystemExit(f"{root}: no synthetic.json; expected an `nlbench data export-synthetic` folder")
    synthetic = export["config"]
    common = dict(recipe={"max_steps": steps, "epochs": 1, "val_points": 1}, measure={"enabled": False},
                  wandb={"enabled": False})
    same = {"frames": synthetic["frames"], "size": synthetic["size"], "num_workers": workers}
    return {
        "cached": base.replace(data={"source": "synthetic", "split_sizes": synthetic["split_sizes"],
                                     "data_seed": synthetic["seed"], "distractors": synthetic["distractors"],
                                     "noise": synthetic["noise"], "colours": synthetic["colours"],
                                     "cache_dir": str(cache_dir), **same}, **common),
        "video": base.replace(data={"source": "video", "root": str(root), **same}, **common),
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("root", type=Path)
    p.add_argument("--config", type=Path, default=Path("configs/tiny.yaml"))
    p.add_argument("--steps", type=int, default=80)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    rates: dict[str, list[float]] = {"cached": [], "video": []}
    with tempfile.TemporaryDirectory() as tmp:
        runs = configs(args.root, RunConfig.load(args.config), args.steps, args.workers, Path(tmp) / "cache")
        for r in range(args.rounds):
            for name, cfg in runs.items():
                record = train_run(cfg, Path(tmp) / f"{name}-{r}", progress=False)
                rates[name].append(record["train_clips_per_s"])
                print(f"round {r}: {name:>6} {record['train_clips_per_s']:7.1f} clips/s "
                      f"(step {record['step_ms']:.2f} ms)", flush=True)
    median = {k: statistics.median(v) for k, v in rates.items()}
    result = {"root": str(args.root), "config": str(args.config), "steps": args.steps, "workers": args.workers,
              "clips_per_s": rates, "median": median, "video_over_cached": median["video"] / median["cached"]}
    print(f"video {median['video']:.1f} / cached {median['cached']:.1f} clips/s = "
          f"{100 * result['video_over_cached']:.0f} %")
    if args.out:
        atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
