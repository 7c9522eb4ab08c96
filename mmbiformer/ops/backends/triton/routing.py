"""BRA's region routing on the Triton kernels of ``routing_kernels.py``: the regions'
mean q and k, each region's top-k routed regions, and those as bit masks (the dense
kernels' form). Forward only: the routing is
detached (BiFormer's ``diff_routing=False``), so nothing here has a backward.
:func:`~mmbiformer.ops.backends.choose.routing_runs_triton` says when they run."""
from typing import Tuple

import torch
import triton

from . import routing_kernels as kernels
from .accumulate import acc_tl


def region_means(qkv: torch.Tensor, n_win: int, qk_dim: int
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`mmbiformer.ops.functional.region_means` (the same signature and dtypes):
    the mean query and key of each region of the NHWC projection ``qkv``, read in
    place, as (N, S*S, qk_dim) each."""
    if qkv.stride(-1) != 1:
        qkv = qkv.contiguous()
    N, H, W, _ = qkv.shape
    S = n_win
    RH, RW = H // S, W // S
    C = 2 * qk_dim
    out = torch.empty(N, S * S, C, device=qkv.device, dtype=qkv.dtype)
    block_c = min(128, triton.next_power_of_2(C))
    block_t = max(1, min(64, 4096 // block_c, triton.next_power_of_2(RH * RW)))
    kernels._region_means[(N * S * S, triton.cdiv(C, block_c))](
        qkv, out, *qkv.stride()[:3], S, RH, RW, C, 1.0 / (RH * RW),
        BLOCK_T=block_t, BLOCK_C=block_c, ACC=acc_tl(qkv.dtype), num_warps=4)
    return out.split(qk_dim, -1)


def top_regions(logits: torch.Tensor, k: int) -> torch.Tensor:
    """``torch.topk(logits, k, -1).indices`` (int64, largest first) for routing logits
    (..., R): among equal logits the lower index first."""
    logits = logits.contiguous()
    R = logits.shape[-1]
    rows = logits.numel() // R
    index = torch.empty(*logits.shape[:-1], k, device=logits.device, dtype=torch.int64)
    block_r = triton.next_power_of_2(R)
    block_rows = max(1, min(64, 4096 // block_r))
    kernels._top_regions[(triton.cdiv(rows, block_rows), )](
        logits, index, rows, R, K=k, BLOCK_ROWS=block_rows, BLOCK_R=block_r,
        ACC=acc_tl(logits.dtype), num_warps=4)
    return index


def routing_bits(index: torch.Tensor) -> torch.Tensor:
    """(N, R, topk) routed region ids (R <= 64) -> (N, R) int64: bit ``k`` set where
    query region r routes to key region k (bit 63 is the sign bit: the dense kernels
    shift and mask, so it reads as any other), in one launch."""
    index = index.contiguous()
    rows, topk = index.numel() // index.shape[-1], index.shape[-1]
    bits = torch.empty(index.shape[:-1], device=index.device, dtype=torch.int64)
    block_rows = max(1, min(256, 4096 // triton.next_power_of_2(topk)))
    kernels._routing_bits[(triton.cdiv(rows, block_rows), )](
        index, bits, rows, TOPK=topk, TOPK_PAD=triton.next_power_of_2(topk),
        BLOCK_ROWS=block_rows, num_warps=4)
    return bits
