"""Precise BN (Wu & Johnson 2021, used by the SlowFast code): before evaluation, replace each BN layer's
running statistics with their true average over a number of training batches, instead of the EMA that
lagged behind the weights."""
from __future__ import annotations

import itertools

import torch
from torch import nn


@torch.no_grad()
def recompute_bn_stats(model: nn.Module, loader, num_batches: int, device=None) -> int:
    """Recompute running mean/var of every BN layer of ``model`` over ``num_batches`` batches of
    ``loader``; returns the number of batches used."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns:
        return 0
    momenta = [bn.momentum for bn in bns]
    was_training = model.training
    model.train()
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average: the exact mean over the batches seen
    used = 0
    for batch in itertools.islice(loader, num_batches):
        if batch is None:
            continue
        model(batch[0].to(device) if device is not None else batch[0])
        used += 1
    for bn, momentum in zip(bns, momenta):
        bn.momentum = momentum
    model.train(was_training)
    return used
