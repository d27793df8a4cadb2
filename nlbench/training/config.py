"""One run's whole configuration: model, data, recipe, devices, seed. Typed, validated when loaded.

A run config is a YAML file with the sections below (every key optional, unknown keys are errors):

    seed: 0
    model:   ModelConfig's keys plus the non-local knobs (see nlbench.models.make_config), and init_from
    data:    the synthetic benchmark or a Kinetics-style root, clip sampling, batch sizes, loader workers
    recipe:  optimiser, lr schedule, epochs, BN handling
    trainer: accelerator, devices, strategy, nodes, precision
    measure: the cost profile of the model (same code as ``nlbench profile``)
    wandb:   W&B project / group / tags / mode (offline unless the user configures it)

Each section is a pydantic model: a field's annotation is its type, its allowed values (``Literal``) and its
bounds, and the one-line error a bad value gets is made from the same declaration (``Expected``). A file is
validated as JSON data (strict: no "5" for 5, no true for 1, a list for a tuple).

``run_id`` hashes everything that changes the result (not ``name``, ``wandb``, ``measure`` or the kernels'
ISA ``trainer.isa``), so the same
run appearing in several ablation tables is trained once.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import typing
from dataclasses import asdict, replace
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from nlbench.data.analysis import ENSEMBLES
from nlbench.data.transforms import KINETICS_MEAN, KINETICS_STD, ClipTransformConfig
from nlbench.data.synthetic import DESIGNS as SYNTHETIC_DESIGNS
from nlbench.data.synthetic import FAMILIES as SYNTHETIC_FAMILIES
from nlbench.data.synthetic import SyntheticConfig, valid_families
from nlbench.data.sampling import SHORT_CLIP_POLICIES
from nlbench.identity import Added, drop_added
from nlbench.identity import plain as _plain
from nlbench.io import load_yaml, yaml_error
from nlbench.models import ModelConfig, make_config
from nlbench.numerics import LEVELS as ISA_LEVELS
from nlbench.ops.knobs import KNOBS, model_fields
from nlbench.ops.knobs import NAMES as KNOB_NAMES
from nlbench.ops.registry import DEFAULT_BLOCK, fingerprint


# The non-local knobs, declared once in nlbench.ops.knobs.
NL_KNOBS = KNOB_NAMES


class ConfigError(ValueError):
    """A config that cannot run; the message is one line naming the file, key and value."""


class Expected(str):
    """What a field allows, in words: the metadata of an ``Annotated`` field that its error message shows."""


PositiveInt = Annotated[int, Field(ge=1), Expected("a positive int")]
MaybePositiveInt = Annotated[Optional[int], Field(ge=1), Expected("a positive int or null")]
Count = Annotated[int, Field(ge=0), Expected("an int >= 0")]
Positive = Annotated[float, Field(gt=0), Expected("a positive number")]
NonNegative = Annotated[float, Field(ge=0), Expected("a number >= 0")]
RGB = Annotated[tuple[float, float, float], Expected("3 numbers (R, G, B)")]

# What the trainer section accepts (Lightning's names).
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
PRECISIONS = ("32-true", "32", "16-mixed", "bf16-mixed", "64-true")
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("step", "cosine", "onecycle", "constant")


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")  # tuples as lists: what YAML and JSON write


class _ModelSectionBase(_Section):
    def as_model_config(self, num_classes: int) -> ModelConfig:
        kwargs = {name: getattr(self, name) for name in type(self).model_fields if name != "init_from"}
        return make_config(num_classes=num_classes, **kwargs)

    @model_validator(mode="after")
    def _buildable(self):
        try:
            self.as_model_config(num_classes=10)
        except (ValueError, TypeError) as e:
            message = str(e)
            raise ValueError(message if message.startswith("model.") else f"model: {message}") from None
        return self


# ModelConfig's keys (its fields, types and defaults: one definition), then one per non-local knob
# (nlbench.ops.knobs: the knobs where the paper and its peers differ default to None and follow the variant's
# preset, or nl_preset), then init_from: a checkpoint to start from, a 2-D ImageNet ResNet (torchvision format,
# inflated for I3D) or a trained model of the same backbone (its NL blocks, if it has none, keep their identity
# init). The values a key allows are checked by ModelConfig, which the section builds (one place for the
# model's rules, shared with `nlbench profile`).
_MODEL_HINTS = typing.get_type_hints(ModelConfig, include_extras=True)


def _default(f: dataclasses.Field):
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


# The one default a run config sets differently from the model: a run trains, by default the small width that
# trains on a CPU; a model (nlbench profile, the zoo) is measured at the paper's width by default.
RUN_MODEL_DEFAULTS = {"width": "small"}
ModelSection = create_model(
    "ModelSection",
    __base__=_ModelSectionBase,
    __module__=__name__,
    **{f.name: (_MODEL_HINTS[f.name], RUN_MODEL_DEFAULTS.get(f.name, _default(f))) for f in dataclasses.fields(ModelConfig)
       if f.name not in ("num_classes", "nonlocal_knobs")},  # the data set's; the knobs, one by one below
    **{name: (Annotated[hint, Expected(knob.expected + (" or null (the preset's)" if knob.preset else "")),
                        *([knob.added] if knob.added else [])], default)
       for (name, hint, default), knob in zip(model_fields(), KNOBS)},
    init_from=(Optional[str], None),
)


class DataSection(_Section):
    source: Literal["synthetic", "video"] = "synthetic"
    root: str | None = None  # video: Kinetics folders or train/val CSV manifests
    frames: PositiveInt = 16  # clip length (num_frames)
    size: PositiveInt = 32  # the crop the model sees (synthetic: the frame size)
    # synthetic
    split_sizes: tuple[int, int, int] = (10000, 1000, 1000)
    data_seed: int = 0
    distractors: tuple[int, int] = (0, 0)
    noise: float = 4.0
    colours: int = 2  # cue colours (the first of the palette); a new key: it also marks the second design
    # 3: val and test in quadruples that differ only in the cue colours (nlbench.data.synthetic); 2: clip by
    # clip, what every run made before the key had (so a config that omits it is one of those)
    design: Annotated[Literal[SYNTHETIC_DESIGNS], Added(SyntheticConfig.design)] = SyntheticConfig.design
    # the families every split draws from (e.g. [local]: a pretraining set, ablations/profiles.yaml pretrain);
    # all four is what every run made before the key had
    families: Annotated[tuple[str, ...], Expected(f"distinct names from {', '.join(SYNTHETIC_FAMILIES)}"),
                        Added(SYNTHETIC_FAMILIES)] = SYNTHETIC_FAMILIES
    # video: clip sampling
    sampling_rate: PositiveInt = 2
    num_clips: PositiveInt = 10  # test: temporal clips per video
    num_crops: PositiveInt = 3  # test: spatial crops per clip
    # Added(): keys added with the configurable transforms, which changed the ids of video runs then; a
    # synthetic run reads none of them and keeps its id (nlbench.identity)
    short_clip: Annotated[Literal[SHORT_CLIP_POLICIES], Added()] = "pad_last"  # a video shorter than one clip
    # video: transforms; "auto" is the paper's geometry at `size` (short side [256, 320] and 256 for 224)
    train_short_side: Annotated[Literal["auto"] | tuple[int, int] | None, Expected("auto, null or [min, max]"),
                                Added()] = "auto"
    flip: Annotated[bool, Added()] = True
    test_short_side: Annotated[Literal["auto"] | int | None, Expected("auto, null or an int >= size"), Added()] = "auto"
    test_crop: Annotated[Literal["auto"] | PositiveInt, Expected("auto or a positive int"), Added()] = "auto"
    ensemble: Annotated[Literal[ENSEMBLES], Added()] = "mean_softmax"  # test views -> one score per video
    # both sources; the normalisation every run had before the keys existed
    mean: Annotated[RGB, Added(KINETICS_MEAN)] = KINETICS_MEAN
    std: Annotated[tuple[Positive, Positive, Positive], Expected("3 positive numbers (R, G, B)"),
                   Added(KINETICS_STD)] = KINETICS_STD
    # video: where the probe of every file is cached (auto: $NLBENCH_CACHE_DIR or ~/.cache/nlbench; null: off)
    index_cache: str | None = "auto"
    # loaders
    batch_size: PositiveInt = 16
    eval_batch_size: MaybePositiveInt = None
    num_workers: Count = 0
    cache_dir: str | None = None  # synthetic: keep generated splits as uint8 arrays here (shared by runs)

    @model_validator(mode="after")
    def _consistent(self):
        def bad(key: str, expected: str) -> ValueError:
            return ValueError(f"data.{key}={_plain(getattr(self, key))!r} is not allowed; expected {expected}")

        if self.source == "video" and not self.root:
            raise ValueError("data.root is required with data.source=video (a Kinetics-style folder)")
        if not valid_families(self.families):
            raise bad("families", f"a non-empty list of distinct names from {', '.join(SYNTHETIC_FAMILIES)}")
        t = self.train_short_side
        if isinstance(t, tuple) and not self.size <= t[0] <= t[1]:
            raise bad("train_short_side", f"auto, null or [min, max] with size={self.size} <= min <= max")
        test = self.test_short_side
        if isinstance(test, int) and test < self.size:
            raise bad("test_short_side", f"auto, null or an int >= size={self.size}")
        if isinstance(self.test_crop, int) and isinstance(test, int) and self.test_crop > test:
            raise bad("test_crop", f"auto or an int <= test_short_side={test}")
        try:
            self.transform()
        except ValueError as e:  # a combination the checks above let through
            raise ValueError(f"data: {e}") from None
        return self

    def synthetic(self) -> SyntheticConfig:
        """The embedded benchmark this section describes (source: synthetic)."""
        return SyntheticConfig(frames=self.frames, size=self.size, split_sizes=tuple(self.split_sizes),
                               seed=self.data_seed, distractors=tuple(self.distractors), noise=self.noise,
                               colours=self.colours, design=self.design, families=tuple(self.families))

    def transform(self) -> ClipTransformConfig:
        """The resolved spatial transform of a video run (ValueError on a bad combination)."""
        return ClipTransformConfig.resolve(
            self.size, train_short_side=self.train_short_side, test_short_side=self.test_short_side,
            test_crop=self.test_crop, flip=self.flip, mean=self.mean, std=self.std, num_crops=self.num_crops,
            ensemble=self.ensemble,
        )

    def identity(self) -> dict:
        """This section's part of the run id: the keys that can change the result. The synthetic source
        reads none of the video keys: they are left at their defaults there, so a synthetic run keeps one
        id however they are set (and the id it had before the keys added with the transforms existed)."""
        data = self.to_dict()
        defaults = DataSection().to_dict()
        data.pop("index_cache")  # where probes are cached never changes a result
        unread = _VIDEO_KEYS if self.source == "synthetic" else ()
        data.update({k: defaults[k] for k in unread})
        return drop_added(data, type(self).model_fields, unread)


# The model keys only a model with placed blocks reads.
_BLOCK_KEYS = ("block", "block_args", "block_position")
# The keys only the video source reads.
_VIDEO_KEYS = ("root", "sampling_rate", "num_clips", "num_crops", "short_clip", "train_short_side", "flip",
               "test_short_side", "test_crop", "ensemble")


class RecipeSection(_Section):
    optimizer: Literal[OPTIMIZERS] = "sgd"
    lr: Positive = 0.01
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: NonNegative = 1e-4
    bn_weight_decay: NonNegative = 0.0  # the released code: no weight decay on BN
    schedule: Literal[SCHEDULES] = "step"
    epochs: PositiveInt = 1
    max_steps: MaybePositiveInt = None  # overrides epochs when set
    # step: fractions of training (150k, 300k of 400k)
    milestones: Annotated[tuple[float, ...], Expected("increasing fractions of training in (0, 1)")] = (0.375, 0.75)
    gamma: float = 0.1
    warmup_steps: Count = 0
    label_smoothing: Annotated[float, Field(ge=0, lt=1), Expected("a number in [0, 1)")] = 0.0
    freeze_bn: bool = False  # the paper's 128-frame runs
    precise_bn_batches: Count = 0  # > 0: recompute BN statistics on this many training batches before eval
    grad_clip: Annotated[Optional[float], Field(ge=0), Expected("a number >= 0 or null (0, null: no clipping)")] = None
    val_every_epochs: PositiveInt = 1
    # > 0: validate at this many evenly spaced steps through training (the last at the final step), which
    # the record keeps as its learning curve; 0: every val_every_epochs epochs (the record's curve has those).
    val_points: Annotated[int, Field(ge=0), Expected("an int >= 0 (0: validate every val_every_epochs epochs)"),
                          Added(0)] = 0

    @model_validator(mode="after")
    def _consistent(self):
        m = self.milestones
        if any(not 0 < v < 1 for v in m) or list(m) != sorted(m):
            raise ValueError(f"recipe.milestones={list(m)!r} is not allowed; expected increasing fractions of "
                             "training in (0, 1)")
        if self.freeze_bn and self.precise_bn_batches:
            raise ValueError(f"recipe.precise_bn_batches={self.precise_bn_batches} is not allowed with "
                             "recipe.freeze_bn=true (frozen BN statistics are not recomputed); expected 0")
        return self


class TrainerSection(_Section):
    accelerator: Literal[ACCELERATORS] = "auto"  # auto: gpu when CUDA is there, else cpu
    devices: int | str = 1
    strategy: str = "auto"  # auto | ddp | ddp_spawn ...
    num_nodes: PositiveInt = 1
    precision: Literal[PRECISIONS] = "32-true"  # 16-mixed / bf16-mixed on GPU
    deterministic: bool = True
    # torch CPU threads (null or 0: torch's default)
    threads: Annotated[Optional[int], Field(ge=0), Expected("an int >= 0 or null (torch's default)")] = None
    # channels_last: NDHWC activations and weights; the small models train ~15-20% faster on a CPU (oneDNN).
    memory_format: Literal["contiguous", "channels_last"] = "contiguous"
    # The CPU kernels' ISA level (nlbench.numerics; null: the CPU's best). Not in the run_id: it picks the
    # kernels, which the record states, as it states the machine.
    isa: Annotated[Optional[Literal[tuple(ISA_LEVELS)]], Expected(f"one of {', '.join(ISA_LEVELS)} or null")] = None

    @property
    def channels_last(self) -> bool:
        return self.memory_format == "channels_last"


class MeasureSection(_Section):
    enabled: bool = True
    warmup: Count = 1
    repeats: PositiveInt = 3
    eval_batch: MaybePositiveInt = None  # latency at this batch too (default: data.eval_batch_size or batch_size)


class WandbSection(_Section):
    enabled: bool = True
    # auto: WANDB_MODE, else online when WANDB_API_KEY is set, else offline
    mode: Literal["auto", "offline", "online", "disabled"] = "auto"
    project: str = "nlbench"
    entity: str | None = None
    group: str | None = None
    tags: tuple[str, ...] = ()
    dir: str | None = None  # default: the run directory


# model.init_from: run:<run_id> is the finished run of that id in the runs folder of the run being trained
# (results/<profile>/runs/): the id, not a path, is then part of the fine-tuned run's id on every machine.
RUN_PREFIX = "run:"
_RUN_ID = re.compile(r"[0-9a-f]{16}")


def init_run(init_from: str | None) -> str | None:
    """The run id of ``model.init_from: run:<run_id>``; None for a path or no init."""
    return init_from[len(RUN_PREFIX):] if init_from and init_from.startswith(RUN_PREFIX) else None


class RunConfig(_Section):
    seed: Count = 0
    name: str | None = None
    model: ModelSection = Field(default_factory=ModelSection)
    data: DataSection = Field(default_factory=DataSection)
    recipe: RecipeSection = Field(default_factory=RecipeSection)
    trainer: TrainerSection = Field(default_factory=TrainerSection)
    measure: MeasureSection = Field(default_factory=MeasureSection)
    wandb: WandbSection = Field(default_factory=WandbSection)

    @model_validator(mode="after")
    def _consistent(self):
        init = self.model.init_from
        if init is not None and init.startswith(RUN_PREFIX) and not _RUN_ID.fullmatch(init[len(RUN_PREFIX):]):
            raise ValueError(f"model.init_from={init!r} is not allowed; expected run:<run id> (16 hex digits: a "
                             f"finished run of the same runs folder), a checkpoint file or a run's folder")
        if self.recipe.freeze_bn and self.model.zero_init_residual and not self.model.init_from:
            raise ValueError("model.zero_init_residual=true is not allowed with recipe.freeze_bn=true and no "
                             "model.init_from (every residual branch's last BN gamma would stay frozen at 0)")
        return self

    # ---------------------------------------------------------------------------------------- building

    @classmethod
    def from_dict(cls, data: dict | None, source: str = "config") -> "RunConfig":
        """Build and validate; ``source`` (a file name) prefixes every error."""
        data = data or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a mapping of sections, got {type(data).__name__}")
        # A section header whose keys are all commented out is YAML null: the section's defaults.
        data = {k: {} if v is None and k in _SECTIONS else v for k, v in data.items()}
        try:
            # As JSON data, not Python objects: strict, yet a list is a tuple (what YAML has is JSON's types).
            return cls.model_validate_json(json.dumps(data, default=str))
        except ValidationError as e:
            raise ConfigError(f"{source}: {_one_line(e, data)}") from None

    @classmethod
    def load(cls, path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> "RunConfig":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file")
        try:
            data = load_yaml(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(yaml_error(path, e)) from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
        return cls.from_dict(apply_overrides(data, overrides, str(path)), str(path))

    def replace(self, **sections: dict) -> "RunConfig":
        """A copy with some keys changed: ``cfg.replace(model={"nl_blocks": 5}, seed=1)``."""
        data = self.to_dict()
        for key, value in sections.items():
            if isinstance(value, dict):
                data[key] = {**data.get(key, {}), **value}
            else:
                data[key] = value
        return RunConfig.from_dict(data)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    # ------------------------------------------------------------------------------------ identity

    def result_dict(self) -> dict:
        """What decides the result of the run: everything but the name, the logging and the measurements."""
        data = self.to_dict()
        for key in ("name", "wandb", "measure"):
            data.pop(key)
        data["trainer"].pop("isa")
        data["data"] = self.data.identity()
        drop_added(data["recipe"], RecipeSection.model_fields)
        # One architecture, one id, however it is spelled: "1 block" and "1 block in res4" are the same
        # placement, and a model without non-local blocks has no non-local knobs.
        model = data["model"]
        placement = self.model.as_model_config(num_classes=10).placement()
        model["nl_blocks"] = [[stage, i] for stage, indices in sorted(placement.items()) for i in indices]
        model.pop("nl_stage")
        model.pop("nl_preset")  # what it chooses is in the resolved knobs below
        # A researcher's block: a hash of its source, so an edited block is a new run.
        if placement and self.model.block != DEFAULT_BLOCK:
            model["block_source"] = fingerprint(self.model.block)
        if not placement or self.model.block != DEFAULT_BLOCK:
            for knob in NL_KNOBS:
                model.pop(knob)
        else:
            # The knobs as the blocks get them: None filled from the preset, C/2 spelled as ratio 0.5
            # or left to the default are one bottleneck.
            knobs = self.model.as_model_config(num_classes=10).resolved_knobs()
            if knobs.inner_ratio == 0.5 and knobs.inner_channels is None:
                knobs = replace(knobs, inner_ratio=None)
            model.update({k: _plain(v) for k, v in asdict(knobs).items() if k in NL_KNOBS})
        # A model without placed blocks reads none of the block's keys.
        drop_added(model, type(self.model).model_fields, unread=() if placement else _BLOCK_KEYS)
        return data

    @property
    def run_id(self) -> str:
        blob = json.dumps(self.result_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

def config_keys() -> list[str]:
    """Every KEY of a ``KEY=VALUE`` override with its type and default, from the same fields that validate it
    (``nlbench train --help`` lists them)."""
    lines = []
    for section, field in RunConfig.model_fields.items():
        model = field.annotation
        if section not in _SECTIONS:
            lines.append(f"{section}  {_expected(field)}  (default {_plain(field.default)!r})")
            continue
        for name, f in model.model_fields.items():
            default = _plain(f.default)
            lines.append(f"{section}.{name}  {_expected(f)}  (default {'null' if default is None else repr(default)})")
    return lines


_SECTIONS = tuple(k for k, f in RunConfig.model_fields.items() if isinstance(f.annotation, type)
                  and issubclass(f.annotation, BaseModel))


# ------------------------------------------------------------------------------------------- errors


_TYPE_ERRORS = ("_type", "_parsing", "is_instance_of")


def _one_line(error: ValidationError, data: dict) -> str:
    """pydantic's first error as one line: the dotted key, the value given and what the field allows."""
    e = error.errors(include_url=False)[0]
    model, path, value, field = RunConfig, [], data, None
    for part in e["loc"]:  # the field names; then list indices or the tags of union members
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields and e["type"] != "extra_forbidden":
            break
        path.append(str(part))
        value = value.get(part) if isinstance(value, dict) else None
        if part in fields:
            field = fields[part]
            model = field.annotation
    key = ".".join(path)
    if e["type"] == "extra_forbidden":
        known = [".".join([*path[:-1], k]) for k in getattr(model, "model_fields", {})]
        return f"unknown key {key}; expected one of {', '.join(known)}"
    if e["type"] == "model_type" or e["type"] == "dict_type":
        return f"{key or 'config'} must be a mapping, got {_plain(value)!r}"
    if e["type"] == "value_error":  # a validator's message names its key itself
        return str(e["ctx"]["error"])
    if field is None:
        return f"{key}: {e['msg']}"
    errors = [x for x in error.errors(include_url=False) if [str(p) for p in x["loc"][:len(path)]] == path]
    if all(any(t in x["type"] for t in _TYPE_ERRORS) for x in errors):
        return f"{key}={_plain(value)!r} has the wrong type; expected {_said(field) or _hint_name(field.annotation)}"
    return f"{key}={_plain(value)!r} is not allowed; expected {_expected(field)}"


def _said(field) -> str | None:
    """The field's ``Expected`` words, if its declaration has them."""
    return next((m for m in field.metadata if isinstance(m, Expected)), None)


def _expected(field) -> str:
    said = _said(field)
    if said:
        return said
    if typing.get_origin(field.annotation) is Literal:
        return _choices([str(v) for v in typing.get_args(field.annotation)])
    return _hint_name(field.annotation)


def _choices(values) -> str:
    return ", ".join(values[:-1]) + " or " + values[-1] if len(values) > 1 else values[0]


def _hint_name(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")




def apply_overrides(data: dict, overrides, source: str = "overrides") -> dict:
    """``["recipe.lr=0.1", "model.nl_blocks=5"]`` applied to a nested dict; values are parsed as YAML."""
    data = json.loads(json.dumps(data))  # a deep copy
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"{source}: override {item!r} is not KEY=VALUE (e.g. recipe.lr=0.1)")
        key, raw = item.split("=", 1)
        try:
            value = load_yaml(raw)
        except yaml.YAMLError:
            raise ConfigError(f"{source}: override {item!r}: value {raw!r} is not valid YAML") from None
        *path, last = key.strip().split(".")
        node = data
        for part in path:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{source}: override {item!r}: {part} is not a section")
        node[last] = value
    return data
