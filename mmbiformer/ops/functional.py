"""BRA as functions: the routing and the token attention, one NHWC signature for every
backend (as NATTEN's functional API sits between its modules and its kernels).

:class:`~mmbiformer.ops.bra.BiLevelRoutingAttention` keeps the parameters (projections,
router, LCE conv) and the padding, and calls these:

* :func:`region_means`, :func:`route`: the region-level routing, written once;
* :func:`bi_level_routing_attention`: each region's queries attend to the tokens of its
  routed regions, plus the LCE, by the backend asked for (``reference``, ``sdpa``,
  ``triton``; :func:`~mmbiformer.ops.backends.choose.choose_backend` chooses for ``auto``).
"""
from typing import Callable, NamedTuple, Optional

import torch
import torch.nn as nn

from .backends import attention_of
from .backends.sdpa import SDPAPolicy
from .backends.spec import AttentionSpec
from .dwconv import DepthwiseConv2d


class Routing(NamedTuple):
    """What each query region attends to: ``index`` (N, S*S, topk) region ids and
    ``weights`` (N, S*S, topk), the softmax of their routing logits (read by soft
    routing only; None where not computed)."""
    weights: Optional[torch.Tensor]
    index: torch.Tensor


def region_means(qkv: torch.Tensor, n_win: int, qk_dim: int):
    """(q_r, k_r): the mean query and key of each of the ``n_win**2`` regions of the
    NHWC projection ``qkv`` (N, H, W, 2*qk_dim + dv; H, W multiples of ``n_win``),
    (N, S*S, qk_dim) each, regions in row-major order."""
    N, H, W, _ = qkv.shape
    S = n_win
    means = qkv[..., :2 * qk_dim].reshape(N, S, H // S, S, W // S, 2 * qk_dim).mean((2, 4))
    return means.reshape(N, S * S, 2 * qk_dim).split(qk_dim, -1)


def route(q_r: torch.Tensor, k_r: torch.Tensor, topk: int, scale: float,
          embed: Callable = nn.Identity(), differentiable: bool = False,
          weights: bool = True, top_regions: Optional[Callable] = None) -> Routing:
    """Region-to-region routing: each region keeps the ``topk`` regions of largest
    affinity ``(embed(q_r) * scale) @ embed(k_r)^T``. Gradients flow through the
    logits only if ``differentiable`` (BiFormer detaches them by default). Without
    ``weights`` (hard routing never reads them) their softmax is not computed, and
    ``top_regions(logits, topk)``, if given, picks the indices instead of
    ``torch.topk`` (``backends/triton/routing.py``)."""
    if not differentiable:
        q_r, k_r = q_r.detach(), k_r.detach()
    q_r, k_r = embed(q_r), embed(k_r)
    logits = (q_r * scale) @ k_r.transpose(-2, -1)
    if top_regions is not None and not weights:
        return Routing(None, top_regions(logits, topk))
    top_logits, index = torch.topk(logits, k=topk, dim=-1)
    return Routing(top_logits.softmax(dim=-1) if weights else None, index)


def bi_level_routing_attention(qkv: torch.Tensor, routing: Routing, n_win: int,
                               num_heads: int, qk_dim: int, scale: float,
                               lce: Optional[DepthwiseConv2d] = None,
                               backend: str = 'reference', soft_routing: bool = False,
                               kv_down: Optional[nn.Module] = None,
                               sdpa_policy: SDPAPolicy = SDPAPolicy()) -> torch.Tensor:
    """BRA's token attention plus its LCE, NHWC in and out, by ``backend``.

    Args:
        qkv: (N, H, W, 2*qk_dim + dv), the projection q | k | v, H and W multiples of
            ``n_win`` (pad first).
        routing: from :func:`route`.
        lce: the LCE's depthwise conv of V, or None for none. The Triton op reads its
            weights; the other backends call it (its ``impl`` and hooks apply, e.g.
            the FLOPs counter's).
        backend: ``reference``, ``sdpa`` or ``triton`` (identity KV and hard
            routing only; the LCE inside the op).
        soft_routing, kv_down, sdpa_policy: BiFormer's options of the same names.
    Returns:
        (N, H, W, dv): attention over the tokens of each region's routed regions,
        heads side by side in channels, plus the LCE of V.
    """
    spec = AttentionSpec(n_win, num_heads, qk_dim, scale, soft_routing, kv_down, sdpa_policy)
    return attention_of(backend)(qkv, routing, lce, spec)
