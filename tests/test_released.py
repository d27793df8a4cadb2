"""The README's "Released models" table holds nlbench's counts as the code computes them
(nlbench/report/released.py), and they equal the publishers' stated numbers to the precision stated."""
from __future__ import annotations

from pathlib import Path

import pytest

from nlbench.report.released import BEGIN, END, RELEASED, params, render

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_rows() -> list[list[str]]:
    block = README.read_text().split(BEGIN)[1].split(END)[0]
    return [[c.strip() for c in line.strip("|").split("|")] for line in block.strip().splitlines()[2:]]


def test_readme_params_are_the_converted_models():
    rows = readme_rows()
    assert len(rows) == len(RELEASED)
    for row, cells in zip(RELEASED, rows):
        n = params(row)
        assert cells[1] == f"`{row.published_as}`"
        published, ours = cells[3].split(" / ")
        assert ours == f"{n / 1e6:.1f} M ({n:,})"
        if row.params != "-":  # the publisher's rounding of our exact count
            assert published == row.params == f"{n / 1e6:.1f} M", row.published_as


@pytest.mark.slow
def test_readme_table_is_what_the_code_computes():
    # FLOPs at paper scale: about a minute for the table on 2 cores.
    assert README.read_text().split(BEGIN)[1].split(END)[0] == render().split(BEGIN)[1].split(END)[0]
    for row, cells in zip(RELEASED, readme_rows()):
        if row.gflops != "-":
            published, ours = cells[4].split(" (")[0].split(" / ")
            assert published == ours == row.gflops, row.published_as
