"""BRA's routed token attention as torch custom ops over the Triton kernels.

``routed_attention(qkv, index, ...)`` takes the NHWC qkv projection and the routing
indices and returns the attention output NHWC, with autograd; given BRA's LCE weights it
adds the LCE (depthwise conv of V, read in place from ``qkv``) in the same op, and its
backward adds the LCE's input gradient into dV in place (``dwconv.py``). The forward and backward
are ``torch.library`` custom ops (``mmbiformer::bra_routed_attn_fwd`` / ``_bwd``), so
``torch.compile`` keeps them as single nodes and fuses what is around them without a
graph break.

On a CPU the same kernels run in Triton's interpreter (``TRITON_INTERPRET=1`` set
before Triton is first imported): that is how the CPU test suite checks their numerics.
"""
from typing import Optional, Tuple

import torch
import triton

from ...policy import forward_only
from . import MIN_TILE, dense_kernels, kernels, routing_kernels, use_dense
from .accumulate import acc_dtype, acc_tl
from .dwconv import conv_nhwc_into, weight_grad
from .routing import routing_bits

LOG2E = 1.4426950408889634


def _head_blocks(cq: int, cv: int) -> dict:
    """Channel tiles of one head's q/k and v, for the routed and dense kernels alike."""
    pow2 = triton.next_power_of_2
    return dict(BLOCK_DQ=max(MIN_TILE, pow2(cq)), BLOCK_DV=max(MIN_TILE, pow2(cv)))


def _blocks(L: int, n_keys: int, cq: int, cv: int) -> dict:
    # Query tiles cover one region (at most 64 rows); key tiles run over the routed
    # regions' tokens back to back.
    pow2 = triton.next_power_of_2
    return dict(BLOCK_M=min(64, max(MIN_TILE, pow2(L))),
                BLOCK_N=min(64, max(MIN_TILE, pow2(n_keys))), num_warps=4,
                **_head_blocks(cq, cv))


def _precision(dtype: torch.dtype) -> str:
    """How the kernels' dot products treat fp32 inputs. torch's fp32 matmuls (tf32 off
    by default) are exact to fp32; 'tf32x3' (three tensor-core products of split
    operands) keeps the kernels within fp32 rounding of them, where 'ieee' would run
    on the CUDA cores at a fraction of the speed. With ``allow_tf32`` on, plain tf32
    as torch does. (Ignored for 16-bit inputs; 64-bit ones are exact either way.)"""
    if dtype == torch.float32 and not torch.backends.cuda.matmul.allow_tf32:
        return 'tf32x3'
    return 'tf32'


def _kernel_dtypes(dtype: torch.dtype) -> dict:
    return dict(PREC=_precision(dtype), ACC=acc_tl(dtype))


# Launch settings of each dense kernel (``dense_kernels.py``): query tile BLOCK_M, key
# tile BLOCK_N, warps, pipeline stages. The forward and dQ programs own a query tile and
# walk the key tiles; dK/dV's own a key tile and walk the query tiles. The fastest of 72
# settings each at stage 3 of a 224 input, where they run (docs/benchmark_history.md, run 19;
# `tools/benchmark.py kernels --sweep --attention-kernels dense_fwd dense_dq dense_dkv`).
DENSE_TILES = dict(fwd=dict(BLOCK_M=128, BLOCK_N=32, num_warps=2, num_stages=2),
                   dq=dict(BLOCK_M=128, BLOCK_N=32, num_warps=4, num_stages=1),
                   dkv=dict(BLOCK_M=64, BLOCK_N=64, num_warps=2, num_stages=3))


def _dense_args(qkv: torch.Tensor, n_win: int, RH: int, RW: int, R: int, num_heads: int,
                qk_dim: int, cq: int, cv: int, kernel: str) -> tuple:
    """Size arguments and meta-parameters of the dense ``kernel`` (a key of
    ``DENSE_TILES``)."""
    blocks = dict(DENSE_TILES[kernel], **_head_blocks(cq, cv))
    H, W = qkv.shape[1:3]
    return (n_win, RH, RW, R, W, H * W, num_heads, qk_dim), dict(
        CQ=cq, CV=cv, **_kernel_dtypes(qkv.dtype), **blocks)


def _geometry(qkv: torch.Tensor, index: torch.Tensor, n_win: int, num_heads: int,
              qk_dim: int):
    N, H, W, C = qkv.shape
    RH, RW = H // n_win, W // n_win
    R, topk = index.shape[1], index.shape[2]
    dv = C - 2 * qk_dim
    return N, H, W, RH, RW, R, topk, qk_dim // num_heads, dv // num_heads, dv


def _attention(qkv: torch.Tensor, index: torch.Tensor, n_win: int, num_heads: int,
               qk_dim: int, scale: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """(attention output NHWC, log-sum-exp) by the routed kernels, or the dense ones
    where :func:`use_dense` (the log-sum-exp is then indexed by head and raster token:
    same size, its own order)."""
    N, H, W, RH, RW, R, topk, cq, cv, dv = _geometry(qkv, index, n_win, num_heads, qk_dim)
    L = RH * RW
    attn = qkv.new_empty(N, H, W, dv)
    lse = torch.empty(N, R, num_heads, L, device=qkv.device, dtype=acc_dtype(qkv.dtype))
    if use_dense(H, W, L, topk):
        sizes, meta = _dense_args(qkv, n_win, RH, RW, R, num_heads, qk_dim, cq, cv, 'fwd')
        grid = (triton.cdiv(H * W, meta['BLOCK_M']), num_heads, N)
        dense_kernels._dense_fwd[grid](
            qkv, routing_bits(index), attn, lse, *qkv.stride()[:3], *attn.stride()[:3],
            scale * LOG2E, *sizes, **meta)
    else:
        blocks = _blocks(L, topk * L, cq, cv)
        grid = (triton.cdiv(L, blocks['BLOCK_M']), R * num_heads, N)
        kernels._bra_fwd[grid](
            qkv, index, attn, lse, *qkv.stride()[:3], *attn.stride()[:3],
            scale * LOG2E, n_win, RH, RW, R, topk, num_heads, qk_dim,
            CQ=cq, CV=cv, **_kernel_dtypes(qkv.dtype), **blocks)
    return attn, lse


@torch.library.custom_op('mmbiformer::bra_routed_attn_fwd', mutates_args=())
def routed_attn_fwd(qkv: torch.Tensor, index: torch.Tensor, lce_weight: Optional[torch.Tensor],
                    lce_bias: Optional[torch.Tensor], n_win: int, num_heads: int,
                    qk_dim: int, scale: float
                    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(output, attention-only output, log-sum-exp). Without LCE weights the output is
    the attention's and the second tensor is empty; with them the output is attention
    + LCE and the attention-only output is kept for the backward (its ``delta``)."""
    attn, lse = _attention(qkv, index, n_win, num_heads, qk_dim, scale)
    if lce_weight is None:
        return attn, qkv.new_empty(0), lse
    out = torch.empty_like(attn)
    conv_nhwc_into(out, qkv[..., 2 * qk_dim:], lce_weight, lce_bias, residual=attn)
    return out, attn, lse


@routed_attn_fwd.register_fake
def _(qkv, index, lce_weight, lce_bias, n_win, num_heads, qk_dim, scale):
    N, H, W, RH, RW, R, topk, cq, cv, dv = _geometry(qkv, index, n_win, num_heads, qk_dim)
    return (qkv.new_empty(N, H, W, dv),
            qkv.new_empty(N, H, W, dv) if lce_weight is not None else qkv.new_empty(0),
            qkv.new_empty(N, R, num_heads, RH * RW, dtype=acc_dtype(qkv.dtype)))


# dK/dV's query tiles: 128 rows of the routing regions' tokens, 2 stages in flight. Each
# program walks its tiles one after another, so fewer, larger tiles keep more loads in
# flight; 64 rows at Triton's default 3 stages were slower at every routed stage of
# BiFormer-S (docs/benchmark_history.md, run 18;
# tools/benchmark.py kernels --sweep --attention-kernels dkv).
DKV_QUERY_TILES = dict(BLOCK_M=128, num_stages=2)
# dQ walks its key tiles with 2 warps, 2 stages in flight: faster than 4 warps at
# Triton's default 3 stages at BiFormer-S's routed stages (docs/benchmark_history.md,
# run 19; tools/benchmark.py kernels --sweep --attention-kernels dq).
DQ_KEY_TILES = dict(num_warps=2, num_stages=2)

# Query tokens one dK/dV work item covers at most (whole routing regions, at least one):
# bounds the longest program when routing sends many regions to one.
QUERIES_PER_ITEM = 512


def dkv_work(index: torch.Tensor, chunk: int):
    """The inverse routing, cut into ``_bra_bwd_dkv``'s work items of at most ``chunk``
    query regions (``routing_kernels.py`` says what each output holds): ``routed_by``,
    ``items``, ``slot_first``, ``n_items`` and the number of workspace slots, all from
    one launch. Sizes are bounds known from the shapes (no device sync): per image,
    ``sum(max(1, ceil(c / chunk)))`` over its key regions' list lengths ``c`` (summing
    to ``R * topk``) is at most ``R + ceil(R * topk / chunk)``, and a region cut in
    several items has ``c > chunk``, so fewer than ``2 * c / chunk`` of them."""
    N, R, topk = index.shape
    items_per_img = R + triton.cdiv(R * topk, chunk)
    slots_per_img = triton.cdiv(2 * R * topk, chunk)
    dev = index.device
    routed_by = torch.empty(N * R * topk, device=dev, dtype=torch.int32)
    items = torch.empty(N * items_per_img, 4, device=dev, dtype=torch.int32)
    slot_first = torch.empty(N * R, device=dev, dtype=torch.int32)
    n_items = torch.empty(N * R, device=dev, dtype=torch.int32)
    block_r = triton.next_power_of_2(R)
    # Key regions a step: a (BLOCK_K, BLOCK_R) tile of 4096 "routed" flags (more took
    # every register and 64 KB of shared memory, the limit of sm_75).
    routing_kernels._inverse_routing[(N, )](
        index, routed_by, items, slot_first, n_items, R, topk, chunk, items_per_img,
        slots_per_img, BLOCK_K=max(1, min(64, 4096 // block_r)), BLOCK_R=block_r,
        BLOCK_TAIL=128, num_warps=8)
    return routed_by, items, slot_first, n_items, N * slots_per_img


def _dense_backward(grad_out, qkv, index, out, lse, delta, dqkv, n_win, RH, RW, R,
                    num_heads, qk_dim, cq, cv, scale):
    N, H, W = qkv.shape[:3]
    keep = routing_bits(index)
    strides = (*qkv.stride()[:3], *out.stride()[:3])
    sizes, meta = _dense_args(qkv, n_win, RH, RW, R, num_heads, qk_dim, cq, cv, 'dq')
    grid = (triton.cdiv(H * W, meta['BLOCK_M']), num_heads, N)
    dense_kernels._dense_bwd_dq[grid](qkv, keep, out, grad_out, lse, delta, dqkv, *strides,
                                      scale * LOG2E, scale, *sizes, **meta)
    sizes, meta = _dense_args(qkv, n_win, RH, RW, R, num_heads, qk_dim, cq, cv, 'dkv')
    grid = (triton.cdiv(H * W, meta['BLOCK_N']), num_heads, N)
    dense_kernels._dense_bwd_dkv[grid](qkv, keep, grad_out, lse, delta, dqkv, *strides,
                                       scale * LOG2E, scale, *sizes, **meta)


def _routed_backward(grad_out, qkv, index, out, lse, delta, dqkv, n_win, RH, RW, R, topk,
                     num_heads, qk_dim, cq, cv, scale):
    N = qkv.shape[0]
    L = RH * RW
    dv = qkv.shape[-1] - 2 * qk_dim
    blocks = _blocks(L, topk * L, cq, cv)
    common = dict(CQ=cq, CV=cv, **_kernel_dtypes(qkv.dtype), **blocks)
    strides = (*qkv.stride()[:3], *out.stride()[:3])
    grid = (triton.cdiv(L, blocks['BLOCK_M']), R * num_heads, N)
    kernels._bra_bwd_dq[grid](
        qkv, index, out, grad_out, lse, delta, dqkv, *strides,
        scale * LOG2E, scale, n_win, RH, RW, R, topk, num_heads, qk_dim,
        **dict(common, **DQ_KEY_TILES))
    # Key tiles hold one region's tokens; query tiles run over the routing regions'.
    kv_blocks = dict(common, BLOCK_N=blocks['BLOCK_M'], **DKV_QUERY_TILES)
    chunk = max(1, triton.cdiv(QUERIES_PER_ITEM, L))
    routed_by, items, slot_first, n_items, n_slots = dkv_work(index, chunk)
    ws = torch.empty(max(n_slots, 1), L, qk_dim + dv, device=qkv.device,
                     dtype=acc_dtype(qkv.dtype))
    # Work items on the first grid axis: the only one that takes more than 65535.
    grid = (items.shape[0] * num_heads, triton.cdiv(L, kv_blocks['BLOCK_N']))
    kernels._bra_bwd_dkv[grid](
        qkv, grad_out, lse, delta, routed_by, items, dqkv, ws, *strides, ws.stride(0),
        scale * LOG2E, scale, n_win, RH, RW, R, num_heads, qk_dim, **kv_blocks)
    grid = (N * R, triton.cdiv(L, 32), triton.cdiv(qk_dim + dv, 64))
    kernels._bra_bwd_dkv_reduce[grid](
        ws, slot_first, n_items, dqkv, *qkv.stride()[:3], ws.stride(0), n_win, RH, RW, R,
        qk_dim, qk_dim + dv, BLOCK_N=32, BLOCK_C=64)


@torch.library.custom_op('mmbiformer::bra_routed_attn_bwd', mutates_args=())
def routed_attn_bwd(grad_out: torch.Tensor, qkv: torch.Tensor, index: torch.Tensor,
                    out: torch.Tensor, lse: torch.Tensor, lce_weight: Optional[torch.Tensor],
                    n_win: int, num_heads: int, qk_dim: int, scale: float
                    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dqkv, dW, dB of the LCE): ``out`` is the attention-only output. Without LCE
    weights the last two are empty."""
    N, H, W, RH, RW, R, topk, cq, cv, dv = _geometry(qkv, index, n_win, num_heads, qk_dim)
    L = RH * RW
    grad_out = grad_out.contiguous()
    # Every element is written: dQ by the first kernel, dK and dV by the second.
    dqkv = torch.empty_like(qkv)
    delta = torch.empty_like(lse)
    if use_dense(H, W, L, topk):
        _dense_backward(grad_out, qkv, index, out, lse, delta, dqkv, n_win, RH, RW, R,
                        num_heads, qk_dim, cq, cv, scale)
    else:
        _routed_backward(grad_out, qkv, index, out, lse, delta, dqkv, n_win, RH, RW, R,
                         topk, num_heads, qk_dim, cq, cv, scale)
    if lce_weight is None:
        return dqkv, qkv.new_empty(0), qkv.new_empty(0)
    # LCE: dV += the mirrored conv of the output gradient, in place in dqkv.
    dv_slice = dqkv[..., 2 * qk_dim:]
    conv_nhwc_into(dv_slice, grad_out, lce_weight, residual=dv_slice, flip=True)
    dw, db = weight_grad(qkv[..., 2 * qk_dim:], grad_out, lce_weight.shape[-1])
    return dqkv, dw.to(lce_weight.dtype), db.to(lce_weight.dtype)


@routed_attn_bwd.register_fake
def _(grad_out, qkv, index, out, lse, lce_weight, n_win, num_heads, qk_dim, scale):
    if lce_weight is None:
        return torch.empty_like(qkv), qkv.new_empty(0), qkv.new_empty(0)
    return (torch.empty_like(qkv), torch.empty_like(lce_weight),
            lce_weight.new_empty(lce_weight.shape[0]))


def _setup_context(ctx, inputs, output):
    qkv, index, lce_weight, lce_bias, n_win, num_heads, qk_dim, scale = inputs
    out, attn, lse = output
    # The backward needs the attention-only output: ``out`` itself without LCE.
    ctx.save_for_backward(qkv, index, attn if lce_weight is not None else out, lse,
                          lce_weight)
    ctx.has_bias = lce_bias is not None
    ctx.args = (n_win, num_heads, qk_dim, scale)


def _backward(ctx, grad_out, grad_attn, grad_lse):
    qkv, index, attn, lse, lce_weight = ctx.saved_tensors
    dqkv, dw, db = routed_attn_bwd(grad_out, qkv, index, attn, lse, lce_weight, *ctx.args)
    if lce_weight is None:
        dw = db = None
    return (dqkv, None, dw, db if ctx.has_bias else None) + (None, ) * 4


routed_attn_fwd.register_autograd(_backward, setup_context=_setup_context)


def routed_attention(qkv: torch.Tensor, index: torch.Tensor, n_win: int, num_heads: int,
                     qk_dim: int, scale: float, lce_weight: Optional[torch.Tensor] = None,
                     lce_bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Token attention of each region's queries over its routed regions' keys/values,
    plus, given ``lce_weight`` (C, 1, k, k) and ``lce_bias``, BRA's LCE: the depthwise
    k x k conv of V (padding k // 2) read in place from ``qkv``.

    Args:
        qkv: (N, H, W, 2*qk_dim + dv) NHWC, channels q | k | v, H and W multiples of
            ``n_win``; the last dimension must be contiguous.
        index: (N, n_win**2, topk) routed region ids per query region.
    Returns:
        (N, H, W, dv), NHWC: for each token, attention over the tokens of its region's
        routed regions (softmax scale ``scale``), heads side by side in channels.
    """
    if qkv.stride(-1) != 1:
        qkv = qkv.contiguous()
    index = index.contiguous()
    if forward_only(qkv, lce_weight, lce_bias):  # nothing to keep for a backward
        out, _ = _attention(qkv, index, n_win, num_heads, qk_dim, scale)
        if lce_weight is not None:  # the LCE added in place
            conv_nhwc_into(out, qkv[..., 2 * qk_dim:], lce_weight, lce_bias, residual=out)
        return out
    return routed_attn_fwd(qkv, index, lce_weight, lce_bias, n_win, num_heads, qk_dim,
                           scale)[0]
