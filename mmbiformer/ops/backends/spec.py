"""The one signature of BRA's token-attention backends, and the region layout two of
them share.

Every backend (``reference.py``, ``sdpa.py``, ``triton/``) has
``attention(qkv, routing, lce, spec)``: the NHWC projection q | k | v (N, H, W,
2*qk_dim + dv; H and W multiples of ``spec.n_win``), the routing (``index`` (N, S*S,
topk) and ``weights``, None unless soft routing reads them), the LCE conv (or None),
and :class:`AttentionSpec`, the options; it returns the attention plus the LCE,
(N, H, W, dv). :func:`mmbiformer.ops.backends.attention_of` gives a backend's function
by name, and :func:`~mmbiformer.ops.backends.choose.choose_backend` the name.
"""
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import nn

from ..regions import from_regions, to_regions


@dataclass(frozen=True)
class AttentionSpec:
    """What BRA's token attention computes, besides its tensors.

    ``kv_down`` is the KV down-sampling module (None or ``nn.Identity``: none);
    ``sdpa`` the sdpa backend's own options (a :class:`~.sdpa.SDPAPolicy`, None: its
    defaults), which the other backends ignore."""
    n_win: int
    num_heads: int
    qk_dim: int
    scale: float
    soft_routing: bool = False
    kv_down: Optional[nn.Module] = None
    sdpa: Any = None

    @property
    def identity_kv(self) -> bool:
        return self.kv_down is None or isinstance(self.kv_down, nn.Identity)


def region_kv(kv: torch.Tensor, h: int, w: int, kv_down: Optional[nn.Module]) -> torch.Tensor:
    """KV down-sampled per region: (N, R, h*w, C) -> (N, R, t, C)."""
    if kv_down is None or isinstance(kv_down, nn.Identity):
        return kv
    N, R, _, C = kv.shape
    x = kv.reshape(N * R, h, w, C).permute(0, 3, 1, 2)
    x = kv_down(x)
    return x.flatten(2).transpose(1, 2).reshape(N, R, -1, C)


def in_regions(core: Callable, qkv: torch.Tensor, routing, lce: Optional[nn.Module],
               spec: AttentionSpec) -> torch.Tensor:
    """A backend that works on the region layout, as ``attention(qkv, routing, lce,
    spec)``: ``core(q, kv, weights, index, num_heads, scale, soft_routing)`` on q (N, R,
    l, qk_dim) and the (down-sampled) kv (N, R, t, qk_dim + dv), returning (N, R, l,
    dv); then back to NHWC, plus the LCE of V (the conv module is called, so its
    ``impl`` and hooks apply, e.g. the FLOPs counter's)."""
    S, qd = spec.n_win, spec.qk_dim
    h, w = qkv.shape[1] // S, qkv.shape[2] // S
    regions = to_regions(qkv, S)
    q, kv = regions[..., :qd], region_kv(regions[..., qd:], h, w, spec.kv_down)
    out = core(q, kv, routing.weights, routing.index, spec.num_heads, spec.scale,
               spec.soft_routing)
    out = from_regions(out, S, h, w)
    if lce is None:
        return out
    return lce.forward_nhwc(qkv[..., 2 * qd:], residual=out)
