"""Result files are written atomically: a reader (or a crash) never sees half a file. Config files are read
with one YAML loader."""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import yaml


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file to write ``path`` through: a temporary file beside it, fsynced and renamed over
    ``path`` when the block ends, removed if the block raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes it private; results are for everyone who can read the folder
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_file(path) as f:
        f.write(text.encode("utf-8"))


# PyYAML reads YAML 1.1, where 1e-3 and 1.0e30 are strings (a float needs a dot and a signed exponent): a
# recipe's "lr: 1e-3" would be refused as text. This loader also reads YAML 1.2's floats; nothing that was a
# number before changes.
class _Loader(yaml.SafeLoader):
    pass


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def load_yaml(text: str):
    """``yaml.safe_load`` that also reads 1e-3 as a number."""
    return yaml.load(text, Loader=_Loader)


def yaml_error(path: str | os.PathLike, error: yaml.YAMLError) -> str:
    """The one-line message of a file that ``load_yaml`` refused: ``{path}: line N is not valid YAML (why)``."""
    mark = getattr(error, "problem_mark", None)
    where = f" line {mark.line + 1}" if mark else ""
    return f"{path}:{where} is not valid YAML ({getattr(error, 'problem', error)})"
