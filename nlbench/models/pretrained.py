"""Start a video model from a checkpoint on disk: a 2-D ImageNet ResNet in torchvision's state-dict format, or
a trained video model of the same backbone (docs/paper.md section 3). Nothing is downloaded.

- 2-D -> C2D: every kxk kernel becomes 1xkxk, the same weights (the 1x1 and 3x3 convs, conv1 7x7).
- 2-D -> I3D: a kernel inflated to t x k x k gets each of its t planes = weight / t, so on a clip that is
  constant in time an inflated conv computes what the 2-D one does on a frame (away from the clip's ends).
- video -> video: the same backbone, e.g. a trained C2D into an NL C2D (the authors' schedule). The
  non-local blocks are absent from such a checkpoint and keep their identity init, so the NL model starts
  out computing exactly what the checkpoint did. A 1 x k x k kernel is inflated the same way into t x k x k.

Only the classifier may differ in shape (another number of classes): it is skipped and reported. Any other
shape that does not fit raises, naming the parameter and both shapes.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nlbench.ops.registry import placed_blocks

HEAD = ("fc.weight", "fc.bias")


@dataclass(frozen=True)
class LoadReport:
    """What ``load_pretrained`` did to each entry of the model's state dict (and the checkpoint's leftovers)."""

    loaded: tuple[str, ...]  # copied (2-D kernels as 1 x k x k)
    inflated: tuple[str, ...]  # k x k (or 1 x k x k) spread over t planes, each weight / t
    skipped: tuple[str, ...]  # classifier of another shape: left as initialised
    missing: tuple[str, ...]  # not in the checkpoint: non-local blocks (identity init) or the classifier
    unexpected: tuple[str, ...]  # in the checkpoint, not in the model (ignored)

    def summary(self) -> str:
        return (
            f"{len(self.loaded)} loaded, {len(self.inflated)} inflated, skipped {list(self.skipped)}, "
            f"{len(self.missing)} missing, {len(self.unexpected)} unexpected"
        )


def inflate_weight(weight: Tensor, t: int) -> Tensor:
    """(O, I, kh, kw) or (O, I, 1, kh, kw) -> (O, I, t, kh, kw), each of the t planes weight / t."""
    if weight.dim() == 4:
        weight = weight.unsqueeze(2)
    if weight.dim() != 5 or weight.shape[2] != 1:
        raise ValueError(
            f"inflate_weight: expected a 2-D kernel (O, I, kh, kw) or (O, I, 1, kh, kw), got {tuple(weight.shape)}"
        )
    return weight.repeat(1, 1, t, 1, 1) / t


def _read(checkpoint: str | os.PathLike | Mapping[str, Tensor]) -> dict[str, Tensor]:
    if isinstance(checkpoint, (str, os.PathLike)):
        # weights_only: a checkpoint is data; never run code from one.
        checkpoint = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"load_pretrained: expected a state dict, got {type(checkpoint).__name__}")
    for wrapper in ("state_dict", "model"):  # common training-loop wrappers
        if isinstance(checkpoint.get(wrapper), Mapping):
            checkpoint = checkpoint[wrapper]
    state = {}
    for key, value in checkpoint.items():
        if not isinstance(value, Tensor):
            raise ValueError(f"load_pretrained: checkpoint entry {key!r} is a {type(value).__name__}, not a tensor")
        state[key.removeprefix("module.")] = value  # saved from DataParallel / DDP
    return state


def load_pretrained(
    model: nn.Module, checkpoint: str | os.PathLike | Mapping[str, Tensor], *, strict: bool = True
) -> LoadReport:
    """Copy ``checkpoint`` (a file path or a state dict) into ``model``, inflating 2-D kernels where the
    model's are 3-D; returns what was done.

    With ``strict`` (default), every backbone entry of the model must be in the checkpoint: only the
    non-local blocks and the classifier may be missing (a ResNet-50 checkpoint does not silently half-fill a
    ResNet-101). Raises ValueError on a shape that does not fit, naming the entry and both shapes.
    """
    source = _read(checkpoint)
    target = model.state_dict()
    # The placed blocks' weights are new (a backbone checkpoint has none): never "missing backbone weights".
    block_prefixes = tuple(f"{n}." for n in placed_blocks(model))
    loaded, inflated, skipped, missing = [], [], [], []
    updates: dict[str, Tensor] = {}
    for key, dst in target.items():
        if key not in source:
            missing.append(key)
            continue
        src = source[key]
        if src.shape == dst.shape:
            updates[key] = src
            loaded.append(key)
        elif dst.dim() == 5 and src.dim() in (4, 5) and (src.dim() == 4 or src.shape[2] == 1) and (
            src.shape[:2] + src.shape[-2:] == dst.shape[:2] + dst.shape[-2:]
        ):
            updates[key] = inflate_weight(src, dst.shape[2])
            (loaded if dst.shape[2] == 1 else inflated).append(key)
        elif key in HEAD:
            skipped.append(key)
        else:
            raise ValueError(
                f"load_pretrained: {key}: the checkpoint's shape {tuple(src.shape)} does not fit the model's "
                f"{tuple(dst.shape)}"
            )
    if strict:
        required = [k for k in missing if k not in HEAD and not k.startswith(block_prefixes)]
        if required:
            more = f" and {len(required) - 1} more" if len(required) > 1 else ""
            raise ValueError(
                f"load_pretrained: the checkpoint has no {required[0]!r}{more}; is it the same depth? "
                f"(strict=False loads what is there)"
            )
    with torch.no_grad():
        for key, value in updates.items():
            target[key].copy_(value)
    unexpected = tuple(k for k in source if k not in target)
    return LoadReport(tuple(loaded), tuple(inflated), tuple(skipped), tuple(missing), unexpected)


__all__ = ["HEAD", "LoadReport", "inflate_weight", "load_pretrained"]
