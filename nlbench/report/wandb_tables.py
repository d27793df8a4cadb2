"""The ablation tables in W&B: ``nlbench report`` logs each table to one report run in the table's group.

A W&B user sees, beside the runs of ``<profile>/<table>`` (the group the sweep's runs log to), one run of
``job_type: report`` holding the table as ``wandb.Table`` s: ``ablation`` (our rows beside the paper's, the
95% CIs, the deltas, the costs), ``claims`` (each claim of the paper, its verdict and the deciding paired
difference with its CI) and ``runs`` (one line per run), and the table's plots as ``wandb.Image`` s. The project, entity and mode are the runs'
own (their W&B config section), the mode resolved as for a run (``tracking.resolve_mode``): offline unless
the user is logged in; the offline folders land in ``reports/<profile>/wandb/`` for ``wandb sync``.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from nlbench.report.claims import VERDICTS, claims_frame
from nlbench.training.config import WandbSection
from nlbench.training.tracking import resolve_mode



def wandb_section(records: dict[str, dict]) -> WandbSection:
    """The W&B section of the runs (their config), else the default one."""
    for record in records.values():
        section = (record.get("config") or {}).get("wandb")
        if isinstance(section, dict):
            known = {k: v for k, v in section.items() if k in WandbSection.model_fields}
            known["tags"] = tuple(known.get("tags") or ())
            return WandbSection(**known)
    return WandbSection()


def _json_safe(frame: pd.DataFrame) -> pd.DataFrame:
    # wandb.Table serialises cells as JSON: NaN becomes None, the pandas dtypes plain Python values.
    return frame.astype(object).where(frame.notna(), None)


def log_reports(reports, profile: str, out_dir: Path, records: dict[str, dict], quiet: bool = False) -> list[str]:
    """One report run per table; returns their run folders (or URLs online). Nothing when W&B is off."""
    section = wandb_section(records)
    mode, why = resolve_mode(section.mode)
    if not section.enabled or mode == "disabled":
        return []
    import wandb

    os.environ.setdefault("WANDB_SILENT", "true")
    out_dir.mkdir(parents=True, exist_ok=True)
    logged = []
    for rep in reports:
        name = rep.table.name
        run = wandb.init(
            project=section.project, entity=section.entity, group=f"{profile}/{name}", job_type="report",
            name=f"report {profile}/{name}", tags=["report", name], dir=str(out_dir), mode=mode,
            config={"table": name, "profile": profile, "title": rep.table.title, "baseline": rep.table.baseline},
        )
        data = {
            "ablation": wandb.Table(dataframe=_json_safe(rep.summary)),
            "claims": wandb.Table(dataframe=_json_safe(claims_frame(rep.claims))),
            "runs": wandb.Table(dataframe=_json_safe(rep.frame)),
        }
        for file in rep.files:
            if file.endswith(".png") and (out_dir / file).is_file():
                data[Path(file).stem] = wandb.Image(str(out_dir / file))
        run.log(data)
        run.summary.update({**{f"claims_{v.replace(' ', '_')}": sum(c.verdict == v for c in rep.claims)
                               for v in VERDICTS}, "claims": len(rep.claims),
                            "rows_with_results": int((rep.summary["n_ok"] > 0).sum())})
        where = run.url if mode == "online" and run.url else str(Path(run.dir).parent)
        run.finish()
        logged.append(where)
    # finish() can return before W&B's core process has written the last records of an offline run; the
    # teardown waits for it, so the folders are complete (and syncable) when this returns.
    wandb.teardown()
    if not quiet:
        print(f"W&B: {mode} ({why}): {len(logged)} table report runs"
              + (f" in {out_dir / 'wandb'}" if mode == "offline" else ""))
    return logged


__all__ = ["log_reports", "wandb_section"]
