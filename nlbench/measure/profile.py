"""One cost profile of a module, measured the same way everywhere (CLI, training runs, reports).

params, multiply-adds of one clip (``count_flops``), inference latency at batch 1 and at the training
batch, forward+backward latency and the peak memory of a training step, and a per-part breakdown.
"""
from __future__ import annotations

import platform
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from nlbench.measure.flops import count_flops
from nlbench.measure.timing import measure_latency, peak_memory_mb
from nlbench.ops.layout import to_memory_format
from nlbench.ops.registry import placed_blocks


@dataclass(frozen=True)
class CostProfile:
    params: int
    gflops: float  # multiply-adds of ONE input (batch 1), / 1e9
    latency_ms: float | None  # median inference forward at batch 1 (None: counts only, nothing timed)
    peak_mem_mb: float | None  # peak memory of one forward+backward at the training batch (None: not measured)
    unsupported_ops: dict[str, int]
    timings_ms: dict[str, float]  # every timed variant, by name
    breakdown: list[dict] = field(default_factory=list)  # top-level parts and every NL block
    machine: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def machine_info(device: torch.device) -> dict[str, str]:
    info = {
        "cpu": platform.processor() or platform.machine(),
        "cores": str(torch.get_num_threads()),
        "torch": torch.__version__,
        "device": str(device),
    }
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            info["cpu"] = names[0]
    except OSError:
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _breakdown(module: nn.Module, flops) -> list[dict]:
    """Top-level parts, then every placed block with the ops fvcore could not count inside it (its MACs are
    then a lower bound, unless the block's ``extra_macs`` covers them)."""
    def row(name: str, m: nn.Module) -> dict:
        return {"name": name, "params": sum(p.numel() for p in m.parameters()), "gflops": flops.by_module.get(name, 0) / 1e9}

    rows = [r for r in (row(name, m) for name, m in module.named_children())
            if r["params"] or r["gflops"]]  # activations and pools cost nothing here
    for name, m in placed_blocks(module).items():
        unsupported = flops.unsupported_by_module.get(name)
        rows.append(row(name, m) | ({"unsupported_ops": dict(unsupported)} if unsupported else {}))
    return rows


def profile_module(
    module: nn.Module,
    input_shape: tuple[int, ...],
    *,
    train_batch: int = 8,
    device: str | torch.device = "cpu",
    warmup: int = 1,
    repeats: int = 3,
    channels_last: bool = False,
    timing: bool = True,
) -> CostProfile:
    """Profile ``module`` on inputs of ``(batch, *input_shape)``; leaves its training flag as it was.
    ``channels_last``: time it with weights and inputs in channels-last (NDHWC) memory, as a run does that
    sets ``trainer.memory_format``. ``timing=False``: params and FLOPs only (one traced forward, seconds
    even at paper scale), latency and memory left None."""
    device = torch.device(device)
    module = module.to(device)
    was_training = module.training
    one = torch.randn(1, *input_shape, device=device)
    flops = count_flops(module, one)
    if not timing:
        return CostProfile(
            params=sum(p.numel() for p in module.parameters()),
            gflops=flops.total / 1e9,
            latency_ms=None,
            peak_mem_mb=None,
            unsupported_ops=dict(flops.unsupported),
            timings_ms={},
            breakdown=_breakdown(module, flops),
            machine=machine_info(device),
        )
    batch = torch.randn(train_batch, *input_shape, device=device)
    if channels_last:
        module = to_memory_format(module, torch.channels_last_3d)
        one, batch = (x.contiguous(memory_format=torch.channels_last_3d) for x in (one, batch))

    timings: dict[str, float] = {}
    module.eval()
    with torch.no_grad():
        timings["fwd_b1"] = measure_latency(lambda: module(one), warmup=warmup, repeats=repeats, device=device)["median_ms"]
        timings[f"fwd_b{train_batch}"] = measure_latency(
            lambda: module(batch), warmup=warmup, repeats=repeats, device=device
        )["median_ms"]

    module.train()
    for n, inputs in ((1, one), (train_batch, batch)):

        def train_step(inputs=inputs):
            module.zero_grad(set_to_none=True)
            module(inputs).float().sum().backward()

        timings[f"fwd_bwd_b{n}"] = measure_latency(train_step, warmup=warmup, repeats=repeats, device=device)[
            "median_ms"
        ]
    # Gradients are freed first so the peak includes allocating them, as a real first step does
    # (and nothing allocated before the measurement is freed inside it).
    module.zero_grad(set_to_none=True)
    peak = peak_memory_mb(lambda: module(batch).float().sum().backward(), device=device)
    module.zero_grad(set_to_none=True)
    module.train(was_training)
    return CostProfile(
        params=sum(p.numel() for p in module.parameters()),
        gflops=flops.total / 1e9,
        latency_ms=timings["fwd_b1"],
        peak_mem_mb=peak,
        unsupported_ops=dict(flops.unsupported),
        timings_ms=timings,
        breakdown=_breakdown(module, flops),
        machine=machine_info(device),
    )


__all__ = ["CostProfile", "profile_module", "machine_info"]
