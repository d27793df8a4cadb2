"""Precise BN (Wu & Johnson 2021, used by the SlowFast code): before evaluation, replace each BN layer's
running statistics with their true average over a number of training batches, instead of the EMA that
lagged behind the weights. torch's ``update_bn`` (the SWA utility) does exactly this: reset the statistics,
momentum None (a cumulative average), one forward pass per batch in training mode."""
from __future__ import annotations

import itertools

from torch import nn
from torch.optim.swa_utils import update_bn


def recompute_bn_stats(model: nn.Module, loader, num_batches: int, device=None) -> int:
    """Recompute running mean/var of every BN layer of ``model`` over the first ``num_batches`` batches of
    ``loader`` (a batch of unreadable videos, None, counts but is skipped); returns the batches used."""
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats for m in model.modules()):
        return 0
    used = 0

    def batches():
        nonlocal used
        for batch in itertools.islice(loader, num_batches):
            if batch is not None:
                used += 1
                yield batch

    update_bn(batches(), model, device=device)
    return used
