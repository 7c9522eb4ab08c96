"""BiFormer's MLP: ``fc2(GELU(fc1(x)))``, with the official code's key names
(``mlp.0``, ``mlp.3``; index 1 is an empty slot there).

In captured steps with the policy's ``gelu_mlp`` switch on
(:mod:`mmbiformer.ops.policy`; off by default: slower, for less memory) it runs as one
op with GELU inside the second layer's Triton products (``backends/triton/mlp.py``):
two passes over the 3x-wide hidden map fewer each way, and one hidden map less kept
for the backward. Elsewhere it is the three modules, run one after another.
"""
import torch
import torch.nn as nn

from .backends.choose import mlp_runs_triton
from .linear import GeluLinear, Linear
from .policy import current_policy


class Mlp(nn.Sequential):
    """``Linear(dim, hidden)``, an empty slot, GELU, ``Linear(hidden, dim)``; with
    ``gelu_recompute`` the last two are one :class:`GeluLinear` that recomputes GELU
    in its backward (slot 2 is then empty too)."""

    def __init__(self, dim: int, hidden: int, gelu_recompute: bool = False):
        if gelu_recompute:
            super().__init__(Linear(dim, hidden), nn.Identity(), nn.Identity(),
                             GeluLinear(hidden, dim, recompute=True))
        else:
            super().__init__(Linear(dim, hidden), nn.Identity(), nn.GELU(),
                             Linear(hidden, dim))

    def runs_fused(self, x: torch.Tensor) -> bool:
        """Whether :meth:`forward` on ``x`` runs the one fused op."""
        return mlp_runs_triton(x, current_policy())

    def forward(self, x: torch.Tensor, recompute_fc1: bool = False) -> torch.Tensor:
        """``recompute_fc1``: the fused op keeps only ``x`` and computes the first
        layer again in its backward (the modules' path ignores it: the caller
        checkpoints them)."""
        if self.runs_fused(x):
            from .backends.triton.mlp import gelu_mlp
            fc1, fc2 = self[0], self[3]
            return gelu_mlp(x, fc1.weight, fc1.bias, fc2.weight, fc2.bias, recompute_fc1)
        return super().forward(x)
