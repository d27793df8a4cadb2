"""An ablation table (``ablations/<table>.yaml``) and a profile (``ablations/profiles.yaml``) -> the grid of runs.

A table file::

    table: 2a_instantiation            # the file's stem
    title: "Table 2a: ..."
    baseline: C2D                      # the row deltas are taken against
    defaults: {model: {depth: 50}}     # run-config sections shared by every row
    rows:
      - row: C2D                       # a label, unique in the table
        model: {nl_blocks: 0}          # run-config overrides: model (required), data, recipe
        clip: long                     # optional: the profile's clip overrides (default: `default`)
        paper: {top1: 71.8, top5: 89.7}   # or null
        baseline: C2D                  # optional: the row a non-local row's gain is measured against (default:
                                       # the table's baseline), e.g. R101 rows -> R101 C2D, NL I3D -> I3D
    claims:                            # the paper's qualitative findings for the table (kinds: CLAIM_KINDS)
      - {text: "...", kind: above, rows: [NL], than: C2D}            # each row beats than
      - {text: "...", kind: order, rows: [A, B], within: 1.0}        # each row no more than within below the last
      - {text: "...", kind: similar, rows: [A, B, C], within: 0.5}   # every two rows within +-within (and within
                                                                     # the paper's margin-to-gain ratio, or relative,
                                                                     # x the gain measured: nlbench.report.claims)
      - {text: "...", kind: smaller_gain, row: A, than: [B, C]}      # A's gain over baseline below each of than's
      - {text: "...", kind: cheaper_and_better, row: A, than: B}     # A beats B at fewer GFLOPs

A profile names the base run config, the seeds and what each clip means. Every cell of the grid is one
(row, seed) with its validated ``RunConfig``: base config <- table defaults <- clip <- row <- seed. Every
mistake is a ``ConfigError`` whose one-line message names the file, the row and the key.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nlbench.io import load_yaml, yaml_error
from nlbench.numerics import LEVELS as ISA_LEVELS
from nlbench.training.config import ConfigError, RunConfig

TABLE_KEYS = ("table", "title", "baseline", "defaults", "rows", "claims")
ROW_SECTIONS = ("model", "data", "recipe")
ROW_KEYS = ("row", *ROW_SECTIONS, "clip", "baseline", "paper")
PAPER_KEYS = ("top1", "top5", "params_ratio", "gflops_ratio")
PROFILE_KEYS = ("config", "seeds", "clips", "needs_data", "isa", "score", "pretrain")
# What the tables and claims judge a run by: its test top-1, or (synthetic design 3) its group top-1.
SCORES = ("top1", "group_top1")
PRETRAIN_KEYS = ("config", *ROW_SECTIONS)
ABLATIONS = Path(__file__).resolve().parents[2] / "ablations"  # the repository's table files
PROFILES_FILE = "profiles.yaml"  # beside the table files, and not one of them
DEFAULT_PROFILES = ABLATIONS / PROFILES_FILE


@dataclass(frozen=True)
class Profile:
    name: str
    config: Path
    seeds: tuple[int, ...]
    clips: dict[str, dict]
    needs_data: bool = False
    isa: str | None = None  # every run's trainer.isa: the kernels' ISA level (nlbench.numerics)
    score: str = "top1"  # the record field the report's tables and claims judge runs by (SCORES)
    pretrain: Pretrain | None = None  # every cell fine-tuned from its (depth, seed)'s backbone run


@dataclass(frozen=True)
class Pretrain:
    """A profile's ``pretrain:``: the run config each cell's backbone is (its file, then ``overrides``), with the
    cell's seed, depth and width, arch c2d and no non-local blocks."""

    config: Path
    overrides: dict  # sections model / data / recipe


@dataclass(frozen=True)
class Row:
    label: str
    overrides: dict  # sections model / data / recipe
    clip: str | None
    paper: dict | None
    baseline: str | None = None  # None: the table's baseline


@dataclass(frozen=True)
class Table:
    name: str
    path: Path
    title: str
    baseline: str
    defaults: dict
    rows: tuple[Row, ...]
    claims: tuple[dict, ...]

    def row(self, label: str) -> Row:
        return next(r for r in self.rows if r.label == label)

    def baseline_of(self, label: str) -> str:
        """The row ``label``'s gain is measured against: its ``baseline:`` key, else the table's baseline."""
        return self.row(label).baseline or self.baseline


@dataclass(frozen=True)
class Cell:
    """One run of the sweep: a row of the table at one seed."""

    row: str
    seed: int
    config: RunConfig
    knobs: dict  # knob column -> value, for the CSV
    # The run the cell's model.init_from (run:<its id>) names, trained before the cell (profile pretrain:)
    pretrain: RunConfig | None = None

    # Cached: a run_id hashes the resolved config, and a sweep asks for it at every look at the storage.
    @functools.cached_property
    def run_id(self) -> str:
        return self.config.run_id

    @functools.cached_property
    def key(self) -> str:
        # The optuna grid value: the run_id in it means an edited row or base config is a new cell.
        return f"{self.row} | seed={self.seed} | {self.run_id}"


@dataclass(frozen=True)
class Sweep:
    table: Table
    profile: Profile
    cells: tuple[Cell, ...]
    knob_columns: tuple[str, ...]
    data: str | None = None

    @property
    def name(self) -> str:
        return f"{self.profile.name}/{self.table.name}"

    def cell(self, key: str) -> Cell | None:
        return next((c for c in self.cells if c.key == key), None)


# ----------------------------------------------------------------------------------------------- files


def without_profiles(paths) -> list:
    """``paths`` but the profiles file, which a shell's ``ablations/*.yaml`` matches too and is no table."""
    return [p for p in paths if Path(p).name != PROFILES_FILE]


def table_files(folder: str | Path = ABLATIONS) -> list[Path]:
    """The table files of ``folder``, sorted: its ``*.yaml`` files but the profiles file."""
    return sorted(without_profiles(Path(folder).glob("*.yaml")))


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    try:
        return load_yaml(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(yaml_error(path, e)) from None


def _mapping(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping, got {value!r}")
    return value


def _unknown(data: dict, allowed, where: str) -> None:
    extra = [k for k in data if k not in allowed]
    if extra:
        raise ConfigError(f"{where}: unknown key {extra[0]!r}; expected one of {', '.join(allowed)}")


def _sections(data: Any, where: str, allowed=ROW_SECTIONS) -> dict:
    data = _mapping(data, where)
    _unknown(data, allowed, where)
    return {k: _mapping(v, f"{where}: {k}") for k, v in data.items()}


def load_table(path: str | Path) -> Table:
    """Read and check a table file (not its runs: ``build_sweep`` validates those against a profile)."""
    path = Path(path)
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with keys {', '.join(TABLE_KEYS)}")
    _unknown(data, TABLE_KEYS, str(path))
    for key in ("table", "title", "baseline", "rows"):
        if key not in data:
            raise ConfigError(f"{path}: missing key {key!r}")
    if data["table"] != path.stem:
        raise ConfigError(f"{path}: table={data['table']!r} must equal the file name's stem {path.stem!r}")
    defaults = _sections(data.get("defaults"), f"{path}: defaults")
    if not isinstance(data["rows"], list) or not data["rows"]:
        raise ConfigError(f"{path}: rows must be a non-empty list")
    rows: list[Row] = []
    for i, raw in enumerate(data["rows"]):
        where = f"{path}: rows[{i}]"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where} must be a mapping with keys {', '.join(ROW_KEYS)}")
        label = raw.get("row")
        if not isinstance(label, str) or not label.strip():
            raise ConfigError(f"{where}: missing row label (row: <label>)")
        where = f"{path}: row {label!r}"
        _unknown(raw, ROW_KEYS, where)
        if any(r.label == label for r in rows):
            raise ConfigError(f"{where}: the label is used twice")
        if "model" not in raw or not isinstance(raw["model"], dict):
            raise ConfigError(f"{where}: missing model (a mapping of model keys, e.g. model: {{nl_blocks: 0}})")
        overrides = _sections({k: raw[k] for k in ROW_SECTIONS if k in raw}, where)
        clip = raw.get("clip")
        if clip is not None and not isinstance(clip, str):
            raise ConfigError(f"{where}: clip={clip!r} must be a clip name of the profile (e.g. long)")
        paper = raw.get("paper")
        if paper is not None:
            paper = _mapping(paper, f"{where}: paper")
            _unknown(paper, PAPER_KEYS, f"{where}: paper")
            for k, v in paper.items():
                if not isinstance(v, (int, float)) or isinstance(v, bool):
                    raise ConfigError(f"{where}: paper.{k}={v!r} must be a number")
        baseline = raw.get("baseline")
        if baseline is not None and (not isinstance(baseline, str) or baseline == label):
            raise ConfigError(f"{where}: baseline={baseline!r} must be the label of another row")
        rows.append(Row(label, overrides, clip, paper, baseline))
    labels = [r.label for r in rows]
    if data["baseline"] not in labels:
        raise ConfigError(f"{path}: baseline={data['baseline']!r} is not a row label; rows: {', '.join(labels)}")
    for r in rows:
        if r.baseline is not None and r.baseline not in labels:
            raise ConfigError(f"{path}: row {r.label!r}: baseline={r.baseline!r} is not a row label; "
                              f"rows: {', '.join(labels)}")
    claims = _claims(data.get("claims"), labels, path)
    return Table(data["table"], path, str(data["title"]), data["baseline"], defaults, tuple(rows), claims)


def _claims(raw: Any, labels: list[str], path: Path) -> tuple[dict, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(f"{path}: claims must be a list")
    claims = []
    for i, claim in enumerate(raw):
        where = f"{path}: claims[{i}]"
        claim = _mapping(claim, where)
        kind = claim.get("kind")
        if kind not in CLAIM_KINDS:
            raise ConfigError(f"{where}: kind={kind!r} is not allowed; expected one of {', '.join(CLAIM_KINDS)}")
        CLAIM_KINDS[kind].validate(claim, labels, where)
        claims.append(dict(claim))
    return tuple(claims)


# ------------------------------------------------------------------------------------------------ claims
#
# What a table may say of a claim: its kind and the keys of that kind. What a kind means, the paired
# comparisons of top-1 it is judged on, is the report's (nlbench.report.claims.COMPARISONS).


def _number(claim: dict, key: str, where: str) -> None:
    value = claim.get(key)
    if key in claim and (not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0):
        raise ConfigError(f"{where}: {key}={value!r} must be a number of top-1 points >= 0")


@dataclass(frozen=True)
class ClaimKind:
    """The keys of one kind of claim besides text and kind: ``required`` and ``optional``; ``many``: the keys
    that are lists of row labels (every other label key is one label); ``min_rows``: how many labels rows needs."""

    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    many: tuple[str, ...] = ("rows",)
    min_rows: int = 1

    def validate(self, claim: dict, labels: list[str], where: str) -> None:
        _unknown(claim, ("text", "kind", *self.required, *self.optional), where)
        for key in ("text", *self.required):
            if key not in claim:
                raise ConfigError(f"{where}: kind {self.name} needs key {key!r}")
        for key in ("rows", "row", "than"):
            if key not in claim:
                continue
            value = claim[key]
            if key in self.many:
                if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
                    raise ConfigError(f"{where}: {key} must be a non-empty list of row labels")
            elif not isinstance(value, str):
                raise ConfigError(f"{where}: {key} must be one row label")
            for label in value if key in self.many else [value]:
                if label not in labels:
                    raise ConfigError(f"{where}: {label!r} is not a row label; rows: {', '.join(labels)}")
        if "rows" in claim and len(claim["rows"]) < self.min_rows:
            raise ConfigError(f"{where}: kind {self.name} needs at least {self.min_rows} rows")
        _number(claim, "within", where)
        ratio = claim.get("relative")
        if "relative" in claim and ratio != "paper" and (not isinstance(ratio, (int, float)) or isinstance(ratio, bool)
                                                          or not 0 < ratio <= 1):
            raise ConfigError(f"{where}: relative={ratio!r} is not allowed; expected paper (the paper's "
                              "margin-to-gain ratio) or a fraction of the measured gain in (0, 1]")


CLAIM_KINDS: dict[str, ClaimKind] = {k.name: k for k in (
    ClaimKind("above", ("rows", "than")),
    ClaimKind("order", ("rows",), ("within",), min_rows=2),
    ClaimKind("similar", ("rows", "within"), ("relative",), min_rows=2),
    ClaimKind("smaller_gain", ("row", "than"), many=("than",)),
    ClaimKind("cheaper_and_better", ("row", "than"), many=()),
)}


def _resolve(path: str, base: Path) -> Path:
    """A path in profiles.yaml: as given (from the current folder), else from the folder holding ablations/."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    return base / p


def load_profiles(path: str | Path = DEFAULT_PROFILES) -> dict[str, Profile]:
    path = Path(path)
    data = _read_yaml(path)
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{path}: expected a mapping of profile name -> {{config, seeds, clips}}")
    profiles = {}
    for name, raw in data.items():
        where = f"{path}: profile {name}"
        raw = _mapping(raw, where)
        _unknown(raw, PROFILE_KEYS, where)
        if not isinstance(raw.get("config"), str):
            raise ConfigError(f"{where}: missing config (a run config file, e.g. configs/{name}.yaml)")
        seeds = raw.get("seeds", [0])
        if not isinstance(seeds, list) or not seeds or any(
            not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in seeds
        ) or len(set(seeds)) != len(seeds):
            raise ConfigError(f"{where}: seeds={seeds!r} must be a non-empty list of distinct ints >= 0")
        clips = _mapping(raw.get("clips"), f"{where}: clips")
        clips = {str(k): _sections(v, f"{where}: clips.{k}") for k, v in clips.items()}
        clips.setdefault("default", {})
        needs_data = raw.get("needs_data", False)
        if not isinstance(needs_data, bool):
            raise ConfigError(f"{where}: needs_data={needs_data!r} must be true or false")
        isa = raw.get("isa")
        if isa is not None and isa not in ISA_LEVELS:
            raise ConfigError(f"{where}: isa={isa!r} must be one of {', '.join(ISA_LEVELS)} or null")
        score = raw.get("score", "top1")
        if score not in SCORES:
            raise ConfigError(f"{where}: score={score!r} must be one of {', '.join(SCORES)}")
        profiles[str(name)] = Profile(str(name), _resolve(raw["config"], path.parent.parent), tuple(seeds), clips,
                                      needs_data, isa, score, _pretrain(raw, path, where))
    return profiles


def _pretrain(raw: dict, path: Path, where: str) -> Pretrain | None:
    if raw.get("pretrain") is None:
        return None
    where = f"{where}: pretrain"
    data = _mapping(raw["pretrain"], where)
    _unknown(data, PRETRAIN_KEYS, where)
    config = data.get("config", raw["config"])
    if not isinstance(config, str):
        raise ConfigError(f"{where}: config={config!r} must be a run config file (default: the profile's config)")
    config = _resolve(config, path.parent.parent)
    if not config.is_file():
        raise ConfigError(f"{where}: config={str(config)!r}: no such file")
    return Pretrain(config, _sections({k: v for k, v in data.items() if k != "config"}, where))


# ------------------------------------------------------------------------------------------------ grid


def _merge(base: dict, *layers: dict) -> dict:
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for layer in layers:
        for section, values in layer.items():
            out[section] = {**out.get(section, {}), **values}
    return out


def check_data_root(root: str | Path) -> Path:
    """A Kinetics-style data set (split folders or manifests, a class list, or ROOT/annotations/ with the
    official CSVs), else a one-line ConfigError."""
    from nlbench.data.index import available_splits, class_names

    from nlbench.data.kinetics import is_annotated

    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"--data {root}: no such folder (expected a data set: ROOT/{{train,val,test}}/<class>/...)")
    if is_annotated(root):  # official annotations: matched to the files when the sweep starts (data/kinetics.py)
        return root
    try:
        splits = available_splits(root)
        missing = [s for s in ("train", "val") if s not in splits]
        if missing:
            raise ValueError(f"no {missing[0]} split ({root / missing[0]}/ or {root / missing[0]}.csv)")
        if not class_names(root):
            raise ValueError("no classes")
    except (OSError, ValueError) as e:
        raise ConfigError(f"--data {root}: not a data set: {e}") from None
    return root


def _knob_columns(table: Table, profile: Profile) -> list[tuple[str, str]]:
    """(section, key) of every knob the table or its clips set, in the run config's field order; plus frames."""
    used = {("data", "frames")}
    clips = {r.clip or "default" for r in table.rows}
    for layer in [table.defaults, *(r.overrides for r in table.rows), *(profile.clips.get(c, {}) for c in clips)]:
        for section, values in layer.items():
            used.update((section, k) for k in values)
    order = {
        (s, f): (i, j)
        for i, s in enumerate(ROW_SECTIONS)
        for j, f in enumerate(type(getattr(RunConfig(), s)).model_fields)
    }
    return sorted(used, key=lambda sk: order.get(sk, (99, 0)))


def build_sweep(
    table_path: str | Path,
    profile: str = "tiny",
    data: str | Path | None = None,
    profiles_path: str | Path | None = None,
) -> Sweep:
    """The grid rows x seeds of validated run configs; raises ConfigError (one line) on any mistake.

    ``profiles_path`` defaults to ``profiles.yaml`` beside the table file, else the repository's
    ``ablations/profiles.yaml``.
    """
    table = load_table(table_path)
    if profiles_path is None:
        beside = table.path.parent / PROFILES_FILE
        profiles_path = beside if beside.is_file() else DEFAULT_PROFILES
    profiles = load_profiles(profiles_path)
    if profile not in profiles:
        raise ConfigError(f"unknown profile {profile!r}; {profiles_path} defines {', '.join(profiles)}")
    prof = profiles[profile]
    # Validated per cell below (paper.yaml alone is incomplete: data.root comes from --data).
    base = _mapping(_read_yaml(prof.config), str(prof.config))
    data_layer: dict = {}
    if prof.needs_data:
        if data is None:
            raise ConfigError(f"profile {profile} needs a data set: pass --data ROOT (make ... DATA=ROOT)")
        data_layer = {"data": {"root": str(check_data_root(data))}}
    elif data is not None:
        raise ConfigError(f"--data {data}: profile {profile} uses the embedded synthetic data; "
                          f"--data is for profiles with needs_data (e.g. paper)")
    isa_layer = {"trainer": {"isa": prof.isa}} if prof.isa else {}
    # Every row's configs first: a bad key in any row is its own one-line error, before the knob columns
    # (the keys of every row) are read from the configs.
    configs = []
    for row in table.rows:
        clip = row.clip or "default"
        if clip not in prof.clips:
            raise ConfigError(f"{table.path}: row {row.label!r}: clip={clip!r} is not defined by profile {profile} "
                              f"(clips: {', '.join(prof.clips)})")
        merged = _merge(base, table.defaults, prof.clips[clip], row.overrides, data_layer, isa_layer)
        for seed in prof.seeds:
            source = f"{table.path}: row {row.label!r} (profile {profile})"
            configs.append((row.label, seed, RunConfig.from_dict({**merged, "seed": seed}, source)))
    if prof.pretrain is not None:
        configs = _fine_tuned(configs, prof, profiles_path, data_layer, isa_layer)
    columns = _knob_columns(table, prof)
    names = [k for _, k in columns]
    cells = []
    for label, seed, config, *backbone in configs:
        knobs = {}
        for section, key in columns:
            column = key if names.count(key) == 1 else f"{section}.{key}"
            value = getattr(getattr(config, section), key)
            # A CSV cell: a tuple as its list, a mapping (block_args) as one JSON text with its keys sorted.
            knobs[column] = (list(value) if isinstance(value, tuple)
                             else json.dumps(value, sort_keys=True) if isinstance(value, dict) else value)
        cells.append(Cell(label, seed, config, knobs, *backbone))
    knob_names = tuple(cells[0].knobs) if cells else ()
    return Sweep(table, prof, tuple(cells), knob_names, str(data) if data is not None else None)


def _fine_tuned(configs: list, prof: Profile, profiles_path, data_layer: dict, isa_layer: dict) -> list:
    """(row, seed, config with model.init_from: run:<backbone id>, backbone config) of each cell: the backbone
    is the profile's pretrain config at the cell's seed, depth and width, a C2D without blocks, not measured.
    A row with its own model.init_from keeps it (and has no backbone)."""
    pretrain = prof.pretrain
    source = f"{profiles_path}: profile {prof.name}: pretrain"
    base = _mapping(_read_yaml(pretrain.config), str(pretrain.config))
    backbones: dict[tuple, RunConfig] = {}
    out = []
    for label, seed, config in configs:
        if config.model.init_from is not None:
            out.append((label, seed, config, None))
            continue
        m = config.model
        key = (seed, m.depth, m.width)
        if key not in backbones:
            # Not measured: no table shows its cost (and not part of its id)
            model = {"depth": m.depth, "width": m.width, "arch": "c2d", "nl_blocks": 0, "init_from": None}
            cell = {"model": model, "measure": {"enabled": False}}
            merged = _merge(base, pretrain.overrides, data_layer, isa_layer, cell)
            backbones[key] = RunConfig.from_dict({**merged, "seed": seed}, source)
        backbone = backbones[key]
        out.append((label, seed, config.replace(model={"init_from": f"run:{backbone.run_id}"}), backbone))
    return out


__all__ = [
    "ABLATIONS", "CLAIM_KINDS", "Cell", "ClaimKind", "DEFAULT_PROFILES", "PROFILES_FILE", "Pretrain", "Profile", "Row",
    "Sweep", "Table", "build_sweep", "check_data_root", "load_profiles", "load_table", "table_files",
    "without_profiles",
]
