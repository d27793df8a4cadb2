"""The report README's control lines: every C2D run solves the local family and nothing across time; every
family is solved by some row with blocks (nlbench/report/build.py, docs/synthetic_data.md)."""
from types import SimpleNamespace

import pandas as pd

from nlbench.report.build import _controls


def _reports(c2d_time: float, nl_spacetime: float):
    rows = []
    for seed in (0, 1):
        rows.append(dict(run_id=f"c{seed}", row="C2D", arch="c2d", nl_blocks=0, seed=seed, status="ok",
                         family_local=100.0, family_space=100.0, family_time=c2d_time if seed else 0.0,
                         family_spacetime=0.0))
        rows.append(dict(run_id=f"n{seed}", row="NL", arch="c2d", nl_blocks=5, seed=seed, status="ok",
                         family_local=100.0, family_space=100.0, family_time=100.0, family_spacetime=nl_spacetime))
        rows.append(dict(run_id=f"i{seed}", row="I3D", arch="i3d_3x1x1", nl_blocks=0, seed=seed, status="ok",
                         family_local=100.0, family_space=90.0, family_time=100.0, family_spacetime=50.0))
    return [SimpleNamespace(frame=pd.DataFrame(rows))]


def test_a_control_that_holds_and_families_all_solved():
    control, solved = _controls(_reports(c2d_time=0.0, nl_spacetime=100.0), "group_top1")
    assert "2 of 2 C2D runs" in control and "not:" not in control
    assert "by a row with blocks: yes" in solved and "spacetime 100.0 (NL)" in solved


def test_a_c2d_seed_across_time_and_an_unsolved_family_are_named():
    control, solved = _controls(_reports(c2d_time=75.0, nl_spacetime=80.0), "group_top1")
    assert "1 of 2 C2D runs" in control and "not: C2D seed 1 (local 100.0, time 75.0, spacetime 0.0)" in control
    assert "no (spacetime)" in solved and "spacetime 80.0 (NL)" in solved  # I3D's 50 is not the best


def test_the_backbones_a_grid_was_fine_tuned_from_count_in_its_cost(tmp_path):
    import json

    from nlbench.report.build import _backbones, busy_minutes

    def record(run_id, started, finished, init_from=None):
        return {"run_id": run_id, "status": "ok", "started": started, "finished": finished, "wall_s": 60.0,
                "config": {"model": {"init_from": init_from}}}

    backbone = record("b" * 16, "2026-12-07T10:00:00+00:00", "2026-12-07T10:01:00+00:00")
    (tmp_path / backbone["run_id"]).mkdir()
    (tmp_path / backbone["run_id"] / "record.json").write_text(json.dumps(backbone))
    cells = {i: record(i, "2026-12-07T10:01:00+00:00", "2026-12-07T10:02:00+00:00", f"run:{'b' * 16}")
             for i in ("c" * 16, "d" * 16)}
    cells["e" * 16] = record("e" * 16, "2026-12-07T10:01:00+00:00", "2026-12-07T10:02:00+00:00")  # from scratch
    found = _backbones(cells, tmp_path)
    assert list(found) == ["b" * 16]
    assert busy_minutes({**cells, **found}) == 2.0 and busy_minutes(cells) == 1.0


def test_a_c2d_run_without_family_scores_is_not_counted_as_passing():
    reports = _reports(c2d_time=0.0, nl_spacetime=100.0)
    frame = reports[0].frame
    frame.loc[frame.run_id == "c1", "family_time"] = float("nan")  # no per-family score in its record
    frame.loc[frame.arch != "c2d", "family_space"] = float("nan")
    frame.loc[(frame.arch == "c2d") & (frame.nl_blocks > 0), "family_space"] = float("nan")
    control, solved = _controls(reports, "group_top1")
    assert "1 of 2 C2D runs" in control and "C2D seed 1 (local 100.0, time nan" in control
    assert "no (space)" in solved and "space nan (no score)" in solved
