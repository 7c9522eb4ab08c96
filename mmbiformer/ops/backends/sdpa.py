"""SDPA backend of BRA: routed K/V gathered per region, then PyTorch's fused attention.

The backend for what the Triton kernels do not cover (KV down-sampling, soft routing)
and for machines without Triton. Works on the region layout of the reference path:
q (N, R, l, qk_dim), kv (N, R, t, qk_dim + dim).
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ..attention import heads, merge_heads, sdpa
from .spec import AttentionSpec, in_regions


@dataclass(frozen=True)
class SDPAPolicy:
    """How the SDPA backend runs (constructor arguments of BRA, ``sdpa_*``).

    dense_max_tokens / dense_min_keep: attend densely (all tokens, routing as a mask,
    no gather) when the map has at most ``dense_max_tokens`` tokens or routing keeps at
    least ``1/dense_min_keep`` of the regions: tiny regions (4-16 tokens at 224) leave
    fused-attention tiles mostly empty, and a masked dense product is faster there.
    recompute_kv: gather routed K/V again in backward instead of keeping them (they are
    topk times larger than K/V); only for topk > 1.
    """
    dense_max_tokens: int = 1024
    dense_min_keep: int = 4
    recompute_kv: bool = True

    def use_dense(self, R: int, l: int, topk: int, soft_routing: bool) -> bool:
        # Soft routing scales K/V per (query region, key region): no dense form.
        return not soft_routing and (R * l <= self.dense_max_tokens
                                     or topk * self.dense_min_keep >= R)


class _GatherRegions(torch.autograd.Function):
    """``kv[n, index[n, r]]`` with a deterministic backward.

    Backward of indexing accumulates with atomics (slow, and refused by
    ``torch.use_deterministic_algorithms``); here it is a matmul with the transposed
    one-hot selection matrix instead, exact and deterministic.
    """

    @staticmethod
    def forward(ctx, kv, index):
        N, R = kv.shape[:2]
        ctx.save_for_backward(index)
        ctx.kv_shape = kv.shape
        flat = (index + torch.arange(N, device=index.device).view(N, 1, 1) * R).flatten()
        return kv.reshape(N * R, -1).index_select(0, flat).view(*index.shape, *kv.shape[2:])

    @staticmethod
    def backward(ctx, grad):
        index, = ctx.saved_tensors
        N, R = ctx.kv_shape[:2]
        topk = index.shape[-1]
        sel_t = F.one_hot(index, R).to(grad.dtype).view(N, R * topk, R).transpose(1, 2)
        grad_kv = torch.matmul(sel_t, grad.reshape(N, R * topk, -1))
        return grad_kv.view(ctx.kv_shape), None


def gather_regions(kv: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """kv (N, R, t, C), index (N, R, topk) -> (N, R, topk, t, C), deterministic."""
    return _GatherRegions.apply(kv, index)


def attention(qkv: torch.Tensor, routing, lce, spec: AttentionSpec) -> torch.Tensor:
    """The backends' signature (``spec.py``): :func:`routed_attention` on the region
    layout with ``spec.sdpa`` (None: :class:`SDPAPolicy`'s defaults), plus the LCE."""
    policy = spec.sdpa or SDPAPolicy()

    def core(*args):
        return routed_attention(*args, policy=policy)

    return in_regions(core, qkv, routing, lce, spec)


def routed_attention(q: torch.Tensor, kv: torch.Tensor, weights: torch.Tensor,
                     index: torch.Tensor, num_heads: int, scale: float,
                     soft_routing: bool, policy: SDPAPolicy = SDPAPolicy()) -> torch.Tensor:
    """Token attention over routed regions (the reference path's contract).

    Gathers the routed regions' K/V (:func:`gather_regions`) and attends with
    ``F.scaled_dot_product_attention`` (fused kernels on CUDA: the attention matrix is
    never stored) or, where ``policy.use_dense``, attends to all tokens with the
    routing as a boolean mask.
    """
    N, R, l, qd = q.shape
    if policy.use_dense(R, l, index.shape[-1], soft_routing):
        return _masked_dense_attention(q, kv, index, num_heads, scale)
    if policy.recompute_kv and index.shape[-1] > 1 and torch.is_grad_enabled():
        return checkpoint(_gathered_attention, q, kv, weights, index, num_heads, scale,
                          soft_routing, use_reentrant=False)
    return _gathered_attention(q, kv, weights, index, num_heads, scale, soft_routing)


def _masked_dense_attention(q, kv, index, num_heads, scale):
    N, R, l, qd = q.shape
    t = kv.shape[2]
    keep = F.one_hot(index, R).sum(2) > 0  # (N, R, R): query region -> key region
    mask = keep[:, None, :, None, :, None].expand(N, 1, R, l, R, t)
    k, v = kv.split([qd, kv.shape[-1] - qd], -1)

    def tokens(z):  # (N, R, L, m*c) -> (N, m, R*L, c)
        return z.reshape(N, R * z.shape[2], num_heads, -1).transpose(1, 2)

    out = sdpa(tokens(q), tokens(k), tokens(v), attn_mask=mask.reshape(N, 1, R * l, R * t),
                scale=scale)
    return out.transpose(1, 2).reshape(N, R, l, -1)


def _gathered_attention(q, kv, weights, index, num_heads, scale, soft_routing):
    N, R, _, qd = q.shape
    kv_sel = gather_regions(kv, index)  # (N, R, topk, t, C)
    if soft_routing:
        kv_sel = kv_sel * weights[..., None, None].to(kv_sel.dtype)
    k_sel, v_sel = kv_sel.flatten(2, 3).split([qd, kv.shape[-1] - qd], -1)
    out = sdpa(heads(q, num_heads), heads(k_sel, num_heads), heads(v_sel, num_heads),
                scale=scale)
    return merge_heads(out, N, R)
