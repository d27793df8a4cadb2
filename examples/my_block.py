"""A researcher's own block, benchmarked in the paper's protocol beside the non-local block (README, "Benchmark
your own block"): `nlbench sweep examples/my_block.yaml --profile smoke --workers 2`."""
import torch
from torch import nn


class TemporalMean(nn.Module):
    """z = x + W_b ReLU(W_a mean_t x): each position sees its location's average over time."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        self.W_a = nn.Conv3d(channels, channels // reduction, 1)
        self.W_b = nn.Conv3d(channels // reduction, channels, 1)

    def zero_init_last(self):  # optional: start as the identity, as the non-local block does
        nn.init.zeros_(self.W_b.weight)
        nn.init.zeros_(self.W_b.bias)

    def forward(self, x):
        return x + self.W_b(torch.relu(self.W_a(x.mean(2, keepdim=True))))
