"""One run's whole configuration: model, data, recipe, devices, seed. Typed, validated when loaded.

A run config is a YAML file with the sections below (every key optional, unknown keys are errors):

    seed: 0
    model:   ModelConfig's keys plus the non-local knobs (see nlbench.models.make_config), and init_from
    data:    the synthetic benchmark or a Kinetics-style root, clip sampling, batch sizes, loader workers
    recipe:  optimiser, lr schedule, epochs, BN handling
    trainer: accelerator, devices, strategy, nodes, precision
    measure: the cost profile of the model (same code as ``nlbench profile``)
    wandb:   W&B project / group / tags / mode (offline unless the user configures it)

``run_id`` hashes everything that changes the result (not ``name``, ``wandb`` or ``measure``), so the same
run appearing in several ablation tables is trained once.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import asdict, dataclass, field, fields, make_dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from nlbench.data.analysis import ENSEMBLES
from nlbench.data.transforms import KINETICS_MEAN, KINETICS_STD, ClipTransformConfig
from nlbench.data.synthetic import SyntheticConfig
from nlbench.data.video import SHORT_CLIP_POLICIES
from nlbench.models import ModelConfig, make_config
from nlbench.ops.knobs import KNOBS, model_fields
from nlbench.ops.knobs import NAMES as KNOB_NAMES


# The non-local knobs, declared once in nlbench.ops.knobs.
NL_KNOBS = KNOB_NAMES


class ConfigError(ValueError):
    """A config that cannot run; the message is one line naming the file, key and value."""


def _model_config(self, num_classes: int) -> ModelConfig:
    kwargs = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "init_from"}
    return make_config(num_classes=num_classes, **kwargs)


# ModelConfig's keys, then one per non-local knob (nlbench.ops.knobs: the knobs where the paper and its peers
# differ default to None and follow the variant's preset, or nl_preset), then init_from: a checkpoint to start
# from, a 2-D ImageNet ResNet (torchvision format, inflated for I3D) or a trained model of the same backbone
# (its NL blocks, if it has none, keep their identity init).
ModelSection = make_dataclass(
    "ModelSection",
    [
        ("depth", int, 50),
        ("arch", str, "c2d"),
        ("nl_blocks", int | list, 0),
        ("nl_stage", str | None, None),
        ("width", str | int, "small"),
        ("variant", str, "released"),
        ("dropout", float, 0.5),
        ("zero_init_residual", bool, False),
        ("pools", str | None, None),
        ("stride_on", str | None, None),
        ("inflation", str | None, None),
        ("nl_preset", str | None, None),
        *model_fields(),
        ("init_from", str | None, None),
    ],
    frozen=True,
    namespace={"model_config": _model_config},
)
ModelSection.__module__ = __name__


@dataclass(frozen=True)
class DataSection:
    source: str = "synthetic"  # synthetic | video
    root: str | None = None  # video: Kinetics folders or train/val CSV manifests
    frames: int = 16  # clip length (num_frames)
    size: int = 32  # the crop the model sees (synthetic: the frame size)
    # synthetic
    split_sizes: tuple[int, int, int] = (10000, 1000, 1000)
    data_seed: int = 0
    distractors: tuple[int, int] = (0, 0)
    noise: float = 4.0
    colours: int = 2  # cue colours (the first of the palette); a new key: it also marks the second design
    # video: clip sampling
    sampling_rate: int = 2
    num_clips: int = 10  # test: temporal clips per video
    num_crops: int = 3  # test: spatial crops per clip
    short_clip: str = "pad_last"  # a video shorter than one clip: pad_last | loop | skip | error (README)
    # video: transforms; "auto" is the paper's geometry at `size` (short side [256, 320] and 256 for 224)
    train_short_side: str | tuple[int, int] | None = "auto"  # [min, max], or null: no scale jitter (short side = size)
    flip: bool = True
    test_short_side: str | int | None = "auto"  # an int, or null: the short side scaled to `size`
    test_crop: str | int = "auto"  # auto: the test short side (the paper's 256 crops at 256)
    ensemble: str = "mean_softmax"  # test views -> one score per video: mean_softmax | mean_logits | max_softmax
    mean: tuple[float, float, float] = KINETICS_MEAN  # both sources
    std: tuple[float, float, float] = KINETICS_STD
    # video: where the probe of every file is cached (auto: $NLBENCH_CACHE_DIR or ~/.cache/nlbench; null: off)
    index_cache: str | None = "auto"
    # loaders
    batch_size: int = 16
    eval_batch_size: int | None = None
    num_workers: int = 0
    cache_dir: str | None = None  # synthetic: keep generated splits as uint8 arrays here (shared by runs)

    def synthetic(self) -> SyntheticConfig:
        """The embedded benchmark this section describes (source: synthetic)."""
        return SyntheticConfig(frames=self.frames, size=self.size, split_sizes=tuple(self.split_sizes),
                               seed=self.data_seed, distractors=tuple(self.distractors), noise=self.noise,
                               colours=self.colours)

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
        data = _plain(asdict(self))
        defaults = _plain(asdict(DataSection()))
        data.pop("index_cache")  # where probes are cached never changes a result
        if self.source == "synthetic":
            data.update({k: defaults[k] for k in _VIDEO_KEYS})
        # Keys added after the first recorded runs count only where they differ from the old behaviour.
        for key in _ADDED_KEYS:
            if data[key] == defaults[key] and (self.source == "synthetic" or key in ("mean", "std")):
                data.pop(key)
        return data

    def validate(self, source: str) -> None:
        def bad(key: str, expected: str) -> ConfigError:
            return ConfigError(f"{source}: data.{key}={getattr(self, key)!r} is not allowed; expected {expected}")

        if self.source not in ("synthetic", "video"):
            raise bad("source", "synthetic or video")
        if self.source == "video" and not self.root:
            raise ConfigError(f"{source}: data.root is required with data.source=video (a Kinetics-style folder)")
        for key in ("frames", "size", "batch_size", "sampling_rate", "num_clips", "num_crops"):
            if getattr(self, key) < 1:
                raise bad(key, "a positive int")
        if self.eval_batch_size is not None and self.eval_batch_size < 1:
            raise bad("eval_batch_size", "a positive int")
        if self.num_workers < 0:
            raise bad("num_workers", "an int >= 0")
        if self.short_clip not in SHORT_CLIP_POLICIES:
            raise bad("short_clip", " | ".join(SHORT_CLIP_POLICIES))
        if self.ensemble not in ENSEMBLES:
            raise bad("ensemble", " | ".join(ENSEMBLES))
        t = self.train_short_side
        if t != "auto" and t is not None and (len(t) != 2 or not self.size <= t[0] <= t[1]):
            raise bad("train_short_side", f"auto, null or [min, max] with size={self.size} <= min <= max")
        if isinstance(t, str) and t != "auto":
            raise bad("train_short_side", "auto, null or [min, max]")
        test = self.test_short_side
        if isinstance(test, str) and test != "auto" or isinstance(test, int) and test < self.size:
            raise bad("test_short_side", f"auto, null or an int >= size={self.size}")
        crop = self.test_crop
        if isinstance(crop, str) and crop != "auto" or isinstance(crop, int) and crop < 1:
            raise bad("test_crop", "auto or a positive int")
        if isinstance(crop, int) and isinstance(test, int) and crop > test:
            raise bad("test_crop", f"auto or an int <= test_short_side={test}")
        if len(self.mean) != 3:
            raise bad("mean", "3 numbers (R, G, B)")
        if len(self.std) != 3 or min(self.std) <= 0:
            raise bad("std", "3 positive numbers (R, G, B)")
        try:
            self.transform()
        except ValueError as e:  # a combination the checks above let through
            raise ConfigError(f"{source}: data: {e}") from None


# The video-only keys, and the keys added with the configurable transforms and short-clip policy.
_VIDEO_KEYS = ("root", "sampling_rate", "num_clips", "num_crops", "short_clip", "train_short_side", "flip",
               "test_short_side", "test_crop", "ensemble")
_ADDED_KEYS = ("short_clip", "train_short_side", "flip", "test_short_side", "test_crop", "ensemble", "mean", "std")


# Recipe keys added after the first recorded runs, with the value that behaves as before they existed.
_ADDED_RECIPE_KEYS = {"val_points": 0}


@dataclass(frozen=True)
class RecipeSection:
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    bn_weight_decay: float = 0.0  # the released code: no weight decay on BN
    schedule: str = "step"  # step | cosine | onecycle | constant
    epochs: int = 1
    max_steps: int | None = None  # overrides epochs when set
    milestones: tuple[float, ...] = (0.375, 0.75)  # step: fractions of training (150k, 300k of 400k)
    gamma: float = 0.1
    warmup_steps: int = 0
    label_smoothing: float = 0.0
    freeze_bn: bool = False  # the paper's 128-frame runs
    precise_bn_batches: int = 0  # > 0: recompute BN statistics on this many training batches before eval
    grad_clip: float | None = None
    val_every_epochs: int = 1
    # > 0: validate at this many evenly spaced steps through training (the last at the final step), which
    # the record keeps as its learning curve; 0: every val_every_epochs epochs (the record's curve has those).
    val_points: int = 0


# What the trainer section accepts (Lightning's names); the error messages list them from here.
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
PRECISIONS = ("32-true", "32", "16-mixed", "bf16-mixed", "64-true")


def _choices(values) -> str:
    return ", ".join(values[:-1]) + " or " + values[-1]


@dataclass(frozen=True)
class TrainerSection:
    accelerator: str = "auto"  # one of ACCELERATORS (auto: gpu when CUDA is there, else cpu)
    devices: int | str = 1
    strategy: str = "auto"  # auto | ddp | ddp_spawn ...
    num_nodes: int = 1
    precision: str = "32-true"  # 16-mixed / bf16-mixed on GPU
    deterministic: bool = True
    threads: int | None = None  # torch CPU threads (None: torch's default)
    # channels_last: NDHWC activations and weights; the small models train ~15-20% faster on a CPU (oneDNN).
    memory_format: str = "contiguous"  # contiguous | channels_last

    @property
    def channels_last(self) -> bool:
        return self.memory_format == "channels_last"


@dataclass(frozen=True)
class MeasureSection:
    enabled: bool = True
    warmup: int = 1
    repeats: int = 3
    eval_batch: int | None = None  # latency at this batch too (default: data.eval_batch_size or batch_size)


@dataclass(frozen=True)
class WandbSection:
    enabled: bool = True
    mode: str = "auto"  # auto (WANDB_MODE, else online when WANDB_API_KEY is set, else offline) | offline | online
    project: str = "nlbench"
    entity: str | None = None
    group: str | None = None
    tags: tuple[str, ...] = ()
    dir: str | None = None  # default: the run directory


@dataclass(frozen=True)
class RunConfig:
    seed: int = 0
    name: str | None = None
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    recipe: RecipeSection = field(default_factory=RecipeSection)
    trainer: TrainerSection = field(default_factory=TrainerSection)
    measure: MeasureSection = field(default_factory=MeasureSection)
    wandb: WandbSection = field(default_factory=WandbSection)

    # ---------------------------------------------------------------------------------------- building

    @classmethod
    def from_dict(cls, data: dict | None, source: str = "config") -> "RunConfig":
        """Build and validate; ``source`` (a file name) prefixes every error."""
        config = _build(cls, data or {}, source, "")
        config.validate(source)
        return config

    @classmethod
    def load(cls, path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> "RunConfig":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise ConfigError(f"{path}:{where} is not valid YAML ({getattr(e, 'problem', e)})") from None
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

    def to_dict(self) -> dict:
        return _plain(asdict(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    # ------------------------------------------------------------------------------------ identity

    def result_dict(self) -> dict:
        """What decides the result of the run: everything but the name, the logging and the measurements."""
        data = self.to_dict()
        for key in ("name", "wandb", "measure"):
            data.pop(key)
        data["data"] = self.data.identity()
        # Recipe keys added after run ids existed count only where they differ from the old behaviour.
        for key, old in _ADDED_RECIPE_KEYS.items():
            if data["recipe"][key] == old:
                data["recipe"].pop(key)
        # One architecture, one id, however it is spelled: "1 block" and "1 block in res4" are the same
        # placement, and a model without non-local blocks has no non-local knobs.
        model = data["model"]
        placement = self.model.model_config(num_classes=10).placement()
        model["nl_blocks"] = [[stage, i] for stage, indices in sorted(placement.items()) for i in indices]
        model.pop("nl_stage")
        model.pop("nl_preset")  # what it chooses is in the resolved knobs below
        if not placement:
            for knob in NL_KNOBS:
                model.pop(knob)
        else:
            # The knobs as the blocks get them: None filled from the preset, C/2 spelled as ratio 0.5
            # or left to the default are one bottleneck.
            knobs = self.model.model_config(num_classes=10).resolved_knobs()
            if knobs.inner_ratio == 0.5 and knobs.inner_channels is None:
                knobs = replace(knobs, inner_ratio=None)
            model.update({k: _plain(v) for k, v in asdict(knobs).items() if k in NL_KNOBS})
            # A knob added after run ids existed is hashed only when it differs from what ran before it.
            for knob in KNOBS:
                if knob.has_legacy and model[knob.name] == knob.legacy:
                    model.pop(knob.name)
        return data

    @property
    def run_id(self) -> str:
        blob = json.dumps(self.result_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    # ---------------------------------------------------------------------------------- validation

    def validate(self, source: str = "config") -> None:
        def bad(key: str, value: Any, expected: str) -> ConfigError:
            return ConfigError(f"{source}: {key}={value!r} is not allowed; expected {expected}")

        try:
            self.model.model_config(num_classes=10)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{source}: model: {e}") from None
        r, t = self.recipe, self.trainer
        self.data.validate(source)
        if r.optimizer not in ("sgd", "adamw"):
            raise bad("recipe.optimizer", r.optimizer, "sgd or adamw")
        if r.schedule not in ("step", "cosine", "onecycle", "constant"):
            raise bad("recipe.schedule", r.schedule, "step, cosine, onecycle or constant")
        if not r.lr > 0:
            raise bad("recipe.lr", r.lr, "a positive number")
        if r.epochs < 1:
            raise bad("recipe.epochs", r.epochs, "a positive int")
        if r.max_steps is not None and r.max_steps < 1:
            raise bad("recipe.max_steps", r.max_steps, "a positive int")
        if any(not 0 < m < 1 for m in r.milestones) or list(r.milestones) != sorted(r.milestones):
            raise bad("recipe.milestones", list(r.milestones), "increasing fractions of training in (0, 1)")
        for key in ("weight_decay", "bn_weight_decay"):
            if getattr(r, key) < 0:
                raise bad(f"recipe.{key}", getattr(r, key), "a number >= 0")
        if not 0 <= r.label_smoothing < 1:
            raise bad("recipe.label_smoothing", r.label_smoothing, "a number in [0, 1)")
        if r.val_points < 0:
            raise bad("recipe.val_points", r.val_points, "an int >= 0 (0: validate every val_every_epochs epochs)")
        for key in ("precise_bn_batches", "warmup_steps"):
            if getattr(r, key) < 0:
                raise bad(f"recipe.{key}", getattr(r, key), "an int >= 0")
        if t.accelerator not in ACCELERATORS:
            raise bad("trainer.accelerator", t.accelerator, _choices(ACCELERATORS))
        if t.precision not in PRECISIONS:
            raise bad("trainer.precision", t.precision, _choices(PRECISIONS))
        if t.memory_format not in ("contiguous", "channels_last"):
            raise bad("trainer.memory_format", t.memory_format, "contiguous or channels_last")
        if self.wandb.mode not in ("auto", "offline", "online", "disabled"):
            raise bad("wandb.mode", self.wandb.mode, "auto, offline, online or disabled")
        if self.seed < 0:
            raise bad("seed", self.seed, "an int >= 0")


# ------------------------------------------------------------------------------------------- loading


def _type_ok(value: Any, hint: Any) -> bool:
    """Is ``value`` (from YAML) acceptable for the annotation ``hint``?"""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin in (tuple, list) or hint in (tuple, list):
        if not isinstance(value, (list, tuple)):
            return False
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return all(_type_ok(v, args[0]) for v in value) if args else True
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return True


def _hint_name(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def _build(cls, data: dict, source: str, prefix: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'config'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key {prefix}{unknown[0]!s}; expected one of {', '.join(prefix + k for k in known)}"
        )
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value if value is not None else {}, source, f"{prefix}{name}.")
            continue
        if not _type_ok(value, hint):
            raise ConfigError(f"{source}: {prefix}{name}={value!r} has the wrong type; expected {_hint_name(hint)}")
        if isinstance(value, list) and typing.get_origin(hint) is not list:
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        kwargs[name] = value
    return cls(**kwargs)


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively: what YAML and JSON write."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def apply_overrides(data: dict, overrides, source: str = "overrides") -> dict:
    """``["recipe.lr=0.1", "model.nl_blocks=5"]`` applied to a nested dict; values are parsed as YAML."""
    data = json.loads(json.dumps(data))  # a deep copy
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"{source}: override {item!r} is not KEY=VALUE (e.g. recipe.lr=0.1)")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
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
