"""Rendering the reports from CSV records loads no training stack: no Lightning, optuna, PyAV or W&B.

`nlbench report --skip-measure --no-wandb` reads the committed results and writes tables, claims and plots;
the packages that train, sweep or decode videos cost seconds to import (Lightning alone several) and have
no part in it. A fresh interpreter is the only honest witness: in this one, other tests imported them.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("lightning", "pytorch_lightning", "optuna", "av", "wandb")

_RENDER = """
import json, sys
from nlbench.report.build import build_reports

readme = build_reports("tiny", sys.argv[1], sys.argv[2], sys.argv[3], measure=False, attention=False, quiet=True,
                       log_wandb=False)
print(json.dumps({"readme": str(readme), "heavy": sorted(m for m in %r if m in sys.modules)}))
""" % (HEAVY,)


def test_rendering_reports_from_csvs_imports_no_training_stack(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    # From the repository, with its relative paths: the tables name their CSV as `nlbench report` does.
    done = subprocess.run([sys.executable, "-c", _RENDER, "results", str(tmp_path / "reports"), "ablations"],
                          cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    # The tables were rendered (the same files as the committed ones), not skipped on the way.
    rendered = tmp_path / "reports" / "tiny"
    assert Path(out["readme"]) == rendered / "README.md"
    for table in sorted((REPO / "results" / "tiny").glob("*.csv")):
        assert (rendered / f"{table.stem}.md").read_text() == (REPO / "reports" / "tiny" / f"{table.stem}.md").read_text()
    assert out["heavy"] == []
