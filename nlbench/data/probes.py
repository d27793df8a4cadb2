"""Probe every video once: a cache of ``video.probe`` results keyed by path, size and modification time.

``nlbench data scan``, training and evaluation all index a root through ``probe_files``, so the files
are opened once per root and machine, not once per run, split or scan: a second run on the same root
stats every file and opens none. A file that changed (other size or mtime) is probed again; so is every
file when ``PROBE_VERSION`` changes (the checks of ``video.probe`` became different).

Where the cache lives: one JSON file per root under ``$NLBENCH_CACHE_DIR``, else
``$XDG_CACHE_HOME/nlbench``, else ``~/.cache/nlbench`` (``video-index/<hash of the root's path>.json``).
Not beside the data: a data set is often read-only (a shared copy, a mounted bucket) and is shared by
users whose runs must not write into it; a user's cache directory is writable, machine-local, and the
same for every working directory a run or a scan starts from. The file is written atomically, merged
with what another process wrote meanwhile, so concurrent runs of a sweep never corrupt it (at worst one
of them probes a file again).
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

from nlbench.data.video import VideoMeta, VideoReadError, probe
from nlbench.io import atomic_write_text

PROBE_VERSION = 1


def default_cache_dir() -> Path:
    if os.environ.get("NLBENCH_CACHE_DIR"):
        return Path(os.environ["NLBENCH_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nlbench"


class ProbeCache:
    """The cached probes of one root; ``cache_dir`` None keeps them in memory only (nothing is written)."""

    def __init__(self, root: Path | str, cache_dir: Path | str | None):
        self.root = Path(root).resolve()
        self.path = None
        if cache_dir is not None:
            key = hashlib.sha256(str(self.root).encode()).hexdigest()[:16]
            self.path = Path(cache_dir) / "video-index" / f"{key}.json"
        self._entries = self._read()
        self._dirty: dict[str, dict] = {}

    def _read(self) -> dict[str, dict]:
        if self.path is None or not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}  # a damaged cache is only a slower scan
        if data.get("version") != PROBE_VERSION or data.get("root") != str(self.root):
            return {}
        return data.get("files", {})

    def _key(self, file: Path) -> str:
        file = Path(file).resolve()
        return str(file.relative_to(self.root)) if file.is_relative_to(self.root) else str(file)

    def get(self, file: Path, stat: os.stat_result) -> VideoMeta | str | None:
        """The probe of ``file`` (its meta, or the reason it is unreadable), None if not cached or stale."""
        entry = self._entries.get(self._key(file))
        if entry is None or entry["size"] != stat.st_size or entry["mtime_ns"] != stat.st_mtime_ns:
            return None
        return VideoMeta(**entry["meta"]) if entry["meta"] is not None else entry["reason"]

    def put(self, file: Path, stat: os.stat_result, result: VideoMeta | str) -> None:
        meta = result.to_dict() if isinstance(result, VideoMeta) else None
        entry = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "meta": meta,
                 "reason": None if meta is not None else result}
        key = self._key(file)
        self._entries[key] = self._dirty[key] = entry

    def save(self) -> None:
        if self.path is None or not self._dirty:
            return
        merged = {**self._read(), **self._dirty}  # keep what another process wrote since we read
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps({"version": PROBE_VERSION, "root": str(self.root),
                                                 "files": merged}, separators=(",", ":")))
        self._entries, self._dirty = merged, {}


def probe_files(
    files: Sequence[Path],
    cache: ProbeCache | None = None,
    workers: int | None = None,
    processes: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> list[VideoMeta | str]:
    """``video.probe`` of every file (its meta, or the reason it is unreadable), from ``cache`` where it
    holds a fresh entry. Uncached files are probed in ``workers`` threads (``processes``: processes,
    which scale past the GIL on many cores); ``progress(done, total)`` is called as probes finish."""
    stats = [os.stat(f) for f in files]
    results: list[VideoMeta | str | None] = [cache.get(f, st) if cache else None for f, st in zip(files, stats)]
    todo = [i for i, r in enumerate(results) if r is None]
    total, done = len(files), len(files) - len(todo)
    if progress:
        progress(done, total)
    if todo:
        workers = workers or min(8, 2 * (os.cpu_count() or 1))
        pool_type = ProcessPoolExecutor if processes and workers > 1 else ThreadPoolExecutor
        with pool_type(max_workers=workers) as pool:
            chunk = max(1, min(64, len(todo) // (8 * workers))) if pool_type is ProcessPoolExecutor else 1
            for i, result in zip(todo, pool.map(try_probe, [files[i] for i in todo], chunksize=chunk)):
                results[i] = result
                if cache:
                    cache.put(files[i], stats[i], result)
                done += 1
                if progress:
                    progress(done, total)
        if cache:
            cache.save()
    return results  # type: ignore[return-value]


def try_probe(file: Path) -> VideoMeta | str:
    try:
        return probe(file)
    except VideoReadError as err:
        return err.reason
