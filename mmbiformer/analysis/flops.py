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
  attention (``L`` tokens); the other token mixers (QuadTree, shunted, window) count
  theirs likewise. Each mixer states its count in an ``attention_macs(x)`` method.

Norms, activations, pooling and the region means are not counted (each well under 1% of
the total). Paper convention: one multiply-accumulate is one FLOP.
"""
from collections import Counter
from typing import Dict

import torch
import torch.nn as nn


KINDS = ('conv', 'linear', 'routing', 'attention')


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
        else:  # a token mixer: its own count of what no layer counts
            macs.update(module.attention_macs(x))

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear)) or hasattr(m, 'attention_macs')]
    try:
        with torch.no_grad():
            (forward or model)(*inputs, **kwargs)
    finally:
        for h in handles:
            h.remove()
    return dict(macs)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
