"""The default profile's placements are not degenerate: every non-local block of every row of every table
attends over at least 4x4 positions and 4 keys, measured through the built model at the profile's input
(res5 excepted: 2x2 at the profile's 64x64, which the report flags; and Table 2d's time-only blocks, whose keys
are the T = 2 slots of a 16-frame clip, the two halves the temporal families relate; docs/tiny_recipe.md)."""
from __future__ import annotations

import pytest

from nlbench.measure.geometry import nonlocal_geometry
from nlbench.sweep.spec import ABLATIONS, PROFILES_FILE, build_sweep, table_files

TABLES = table_files(ABLATIONS)


def test_the_tables_measured_are_every_file_of_ablations_but_the_profiles():
    # A file the listing missed (a .yml, a typo) would be a table whose blocks nobody checks.
    assert TABLES and sorted(ABLATIONS.iterdir()) == sorted([*TABLES, ABLATIONS / PROFILES_FILE])


def _geometries(profile: str):
    seen: dict[str, list[dict]] = {}
    for path in TABLES:
        for cell in build_sweep(path, profile).cells:
            if cell.run_id in seen or cell.seed != 0:  # the geometry does not depend on the seed
                continue
            c = cell.config
            model = c.model.as_model_config(2).build(seed=0)
            seen.setdefault(cell.run_id, [(f"{path.stem}: {cell.row}", g) for g in
                                         nonlocal_geometry(model, (3, c.data.frames, c.data.size, c.data.size))])
    return [pair for pairs in seen.values() for pair in pairs]


@pytest.mark.slow
def test_every_tiny_block_sees_4x4_positions_and_4_keys():
    blocks = _geometries("tiny")
    assert blocks, "no non-local block found in the tiny profile"
    small = [(row, g) for row, g in blocks if min(g["input_thw"][1:]) < 4 or g["keys"] < 4]
    # The exceptions the profile documents: the res5 row of Table 2b (res5 is 2x2 at 64x64), and time-only blocks
    # (Table 2d), which attend over the T = 2 slots of a 16-frame clip.
    assert all("res5" in row or "time-only" in row for row, _ in small), small
    few = [(r, g) for r, g in blocks if g["keys"] < 4]
    assert all("time-only" in r and g["keys"] == g["input_thw"][0] == 2 for r, g in few), few
    res4 = [g for _, g in blocks if g["name"].startswith("layer3.")]
    assert res4 and all(g["input_thw"][1:] == [4, 4] for g in res4)
