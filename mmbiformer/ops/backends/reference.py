"""The ``reference`` backend of BRA's token attention: the plain statement of the
maths, in PyTorch, that the other backends (``sdpa.py``, ``triton/``) are tested
against. It runs every option (KV down-sampling, soft routing) on every device, and
while tracing or exporting."""
import torch

from ..attention import heads, merge_heads
from .spec import AttentionSpec, in_regions


def attention(qkv: torch.Tensor, routing, lce, spec: AttentionSpec) -> torch.Tensor:
    """The backends' signature (``spec.py``): :func:`reference_attention` on the region
    layout, plus the LCE."""
    return in_regions(reference_attention, qkv, routing, lce, spec)


def reference_attention(q, kv, weights, index, num_heads, scale, soft_routing):
    """Token attention of each region's queries over its routed regions' K/V, the plain
    statement of the maths (the specification the backends are tested against).

    q (N, R, l, qk_dim), kv (N, R, t, qk_dim + dim), weights / index (N, R, topk)
    -> (N, R, l, dim). Gathers by advanced indexing (a topk-fold copy) and
    materialises the attention matrix.
    """
    N, R, t, _ = kv.shape
    qd, topk = q.shape[-1], index.shape[-1]
    batch = torch.arange(N, device=kv.device).view(N, 1, 1)
    kv_sel = kv[batch, index]  # (N, R, topk, t, qk_dim + dim)
    if soft_routing:
        kv_sel = kv_sel * weights[..., None, None]
    k_sel, v_sel = kv_sel.reshape(N, R, topk * t, -1).split([qd, kv.shape[-1] - qd], -1)
    attn = (heads(q, num_heads) * scale) @ heads(k_sel, num_heads).transpose(-2, -1)
    out = attn.softmax(dim=-1) @ heads(v_sel, num_heads)
    return merge_heads(out, N, R)
