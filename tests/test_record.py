"""The run record's writer (nlbench.record): the committed records come back byte for byte, a field the code
writes must be declared, with its type."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from nlbench.record import read_record, record_json, write_record

COMMITTED = sorted((Path(__file__).resolve().parents[1] / "results" / "tiny" / "runs").glob("*/record.json"))


def test_committed_records_are_rewritten_byte_for_byte():
    """Whatever order a record's fields come in (a dict built step by step, a W&B summary), the file is the
    committed records' layout."""
    assert COMMITTED, "no committed records under results/tiny/runs"
    shuffle = random.Random(0).shuffle
    for path in COMMITTED:
        text = path.read_text()
        items = list(json.loads(text).items())
        shuffle(items)
        assert record_json(dict(items)) == text, path


def test_writer_refuses_an_undeclared_field_or_a_wrong_type(tmp_path):
    record = json.loads(COMMITTED[0].read_text())
    with pytest.raises(ValueError, match="record field 'top_1' is not declared in nlbench.record.RunRecord"):
        write_record(tmp_path, record | {"top_1": 70.0})
    with pytest.raises(ValueError, match="status"):
        write_record(tmp_path, record | {"status": "done"})
    assert not (tmp_path / "record.json").exists()
    write_record(tmp_path, record | {"top1": float("nan")})  # NaN is not JSON: null
    assert read_record(tmp_path)["top1"] is None
