"""Multiply-accumulates (MACs) of a model, with Bi-Level Routing Attention counted.

Generic counters (fvcore, mmengine's ``FlopAnalyzer``) trace operators: they miss the
attention of fused kernels (``scaled_dot_product_attention``) and count the fast path's
dense masked attention as if every token were attended. Here each module is counted
from its input shape by the operation it defines, whatever kernel runs it:

* ``conv``: ``nn.Conv2d`` (stem, downsampling, conv position encoding, LCE, necks, heads);
* ``linear``: ``nn.Linear`` (qkv, output projections, MLPs, classifier);
* ``routing``: region affinity ``q_r @ k_r^T`` of BRA, ``N * R * R * qk_dim``;
* ``attention``: token attention, ``N * R * l * topk * t * (qk_dim + dim)`` for BRA
  (``l`` queries and ``t`` KV tokens per region) and ``N * L * L * 2C`` for global
  attention (``L`` tokens).

Norms, activations, pooling and the region means are not counted (each well under 1% of
the total). Paper convention: one multiply-accumulate is one FLOP.
"""
from collections import Counter
from typing import Dict

import torch
import torch.nn as nn

from ..models.backbones.biformer import GlobalAttentionLePE
from ..ops.bra import BiLevelRoutingAttention

KINDS = ('conv', 'linear', 'routing', 'attention')


def _bra_macs(m: BiLevelRoutingAttention, x: torch.Tensor) -> Dict[str, int]:
    N, H, W, _ = x.shape
    S = m.n_win
    if m.auto_pad:
        H, W = -(-H // S) * S, -(-W // S) * S
    h, w = H // S, W // S
    R, l = S * S, h * w
    # KV tokens per region after down-sampling: run the pool on a dummy region.
    t = m.region_kv(torch.zeros(1, 1, l, 1), h, w).shape[2]
    return {'routing': N * R * R * m.qk_dim,
            'attention': N * R * l * m.topk * t * (m.qk_dim + m.dim)}


def count_macs(model: nn.Module, *inputs, forward=None, **kwargs) -> Dict[str, int]:
    """Run ``model(*inputs, **kwargs)`` (or ``forward(...)``, a method of ``model``)
    once without gradients and return MACs by kind."""
    macs = Counter({k: 0 for k in KINDS})

    def hook(module, args, out):
        x = args[0]
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            macs['conv'] += out.numel() * (module.in_channels // module.groups) * k
        elif isinstance(module, nn.Linear):
            macs['linear'] += out.numel() * module.in_features
        elif isinstance(module, BiLevelRoutingAttention):
            macs.update(_bra_macs(module, x))
        elif isinstance(module, GlobalAttentionLePE):
            N, H, W, C = x.shape
            macs['attention'] += N * (H * W)**2 * 2 * C

    kinds = (nn.Conv2d, nn.Linear, BiLevelRoutingAttention, GlobalAttentionLePE)
    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, kinds)]
    try:
        with torch.no_grad():
            (forward or model)(*inputs, **kwargs)
    finally:
        for h in handles:
            h.remove()
    return dict(macs)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
