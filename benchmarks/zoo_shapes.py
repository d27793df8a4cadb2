"""Every distinct non-local block the model zoo runs, read off the models themselves.

Each row of every ablation table (``ablations/*.yaml``, Table 2a-2g and the bottleneck table) is resolved at
the ``paper`` profile (paper width, 224 crops, 32-frame clips or 128 for ``clip: long``, the profile's
per-GPU batch) and built on the meta device; a forward pre-hook on every ``NonLocalBlock`` records what the
block sees. Nothing here is typed by hand: a new table row or a changed placement shows up by itself.

    python -m benchmarks.zoo_shapes      # prints the distinct shapes and which table rows use them
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from nlbench.ops import NonLocalBlock
from nlbench.sweep.spec import _merge, _read_yaml, load_profiles, load_table, table_files  # noqa: PLC2701 (same project)
from nlbench.training.config import RunConfig

ROOT = Path(__file__).resolve().parent.parent
PROFILE = "paper"


@dataclass(frozen=True, order=True)
class BlockShape:
    """What decides the cost of one non-local block: its input map, knobs that change the work, the batch."""

    instantiation: str
    channels: int
    inner_channels: int
    t: int
    h: int
    w: int
    mode: str
    subsample: bool
    pool_kernel: tuple[int, int, int]
    subsample_order: str
    batch: int

    @property
    def label(self) -> str:
        sub = f"sub{'x'.join(map(str, self.pool_kernel))}-{self.subsample_order}" if self.subsample else "nosub"
        return (f"{self.instantiation}-C{self.channels}-d{self.inner_channels}-{self.t}x{self.h}x{self.w}-"
                f"{self.mode}-{sub}-b{self.batch}")

    def block_kwargs(self) -> dict:
        return dict(instantiation=self.instantiation, inner_channels=self.inner_channels, mode=self.mode,
                    subsample=self.subsample, pool_kernel=self.pool_kernel, subsample_order=self.subsample_order)


def _blocks_of(model_section: dict, frames: int, size: int, batch: int) -> list[BlockShape]:
    config = RunConfig.from_dict({"model": model_section}).model.as_model_config(400)
    with torch.device("meta"):
        model = config.build()
    seen: list[BlockShape] = []

    def hook(block: NonLocalBlock, args) -> None:
        t, h, w = args[0].shape[2:]
        mode = block.mode if isinstance(block.mode, str) else str(block.mode)
        seen.append(BlockShape(block.instantiation, block.in_channels, block.inner_channels, t, h, w, mode,
                               block.subsample, block.pool_kernel, block.subsample_order, batch))

    for m in model.modules():
        if isinstance(m, NonLocalBlock):
            m.register_forward_pre_hook(hook)
    with torch.no_grad():
        model.eval()(torch.empty(1, 3, frames, size, size, device="meta"))
    return seen


def zoo_shapes(profile: str = PROFILE) -> dict[BlockShape, list[str]]:
    """Distinct non-local block shapes -> the table rows ("2a_instantiation: dot product", ...) using them."""
    prof = load_profiles(ROOT / "ablations" / "profiles.yaml")[profile]
    base = _read_yaml(prof.config)
    out: dict[BlockShape, list[str]] = {}
    for path in table_files(ROOT / "ablations"):
        table = load_table(path)
        for row in table.rows:
            merged = _merge(base, table.defaults, prof.clips[row.clip or "default"], row.overrides)
            data = merged["data"]
            for shape in _blocks_of(merged["model"], data["frames"], data["size"], data["batch_size"]):
                users = out.setdefault(shape, [])
                if f"{table.name}: {row.label}" not in users:
                    users.append(f"{table.name}: {row.label}")
    return dict(sorted(out.items()))


if __name__ == "__main__":
    for shape, users in zoo_shapes().items():
        print(shape.label, asdict(shape), "<-", "; ".join(users))
