"""Config keys added after run ids existed, declared once, on the key.

A run id hashes the config keys that can change a result (``nlbench.training.config``). A key added later
would change every id and make every finished run look new; so the key carries ``Added(before)``, the value
that behaves as runs did before it existed, and a run holding that value leaves the key out of its id. Where
no value behaved as before (the runs that read the key changed when it came, and so did their ids),
``Added()`` still keeps the key out of the ids of runs that do not read it (a synthetic run and a video-only
key). One marker for every section, the non-local knobs and the model's fields included; a key without one
is hashed as it is, and ``tests/test_models.py::test_committed_run_ids_are_unchanged`` catches a new key that
forgot it.
"""
from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

_NO_VALUE = object()


@dataclass(frozen=True)
class Added:
    """The metadata of a key added after run ids existed (an ``Annotated`` extra or a knob's ``added``)."""

    before: Any = _NO_VALUE

    def leaves_id(self, value: Any, read: bool) -> bool:
        """Whether a run holding ``value`` (and reading the key or not) keeps the id it had before the key."""
        return not read or (self.before is not _NO_VALUE and plain(value) == plain(self.before))


def added_of(metadata: Iterable[Any]) -> Added | None:
    """The ``Added`` marker among a field's metadata, if it has one."""
    return next((m for m in metadata if isinstance(m, Added)), None)


def drop_added(values: dict, fields: dict, unread: Collection[str] = ()) -> dict:
    """``values`` (a section as plain data) without the added keys that leave the id; ``fields`` are the
    section's pydantic fields, ``unread`` the keys this run does not read."""
    for name, f in fields.items():
        marker = added_of(f.metadata)
        if marker and name in values and marker.leaves_id(values[name], read=name not in unread):
            values.pop(name)
    return values


def plain(value: Any) -> Any:
    """Tuples to lists, recursively: what YAML and JSON write (a config as data, and a declared ``before``)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
