"""The MLP ``fc2(GELU(fc1(x)))`` with GELU folded into the second layer's products
(``mlp_kernels.py``), with autograd.

What each way keeps and passes over, per block (T tokens, C channels, hidden 3C, in
the autocast dtype):

* autograd's ops: ``fc1`` writes P; GELU reads P, writes H; ``fc2`` reads H. The
  backward writes dH, GELU's backward reads dH and P and writes dP. P and H are kept.
* here: ``fc1`` (cuBLAS) writes P; ``fc2`` reads P and applies GELU to each tile it
  loads. The backward's first product applies GELU's derivative to its tile and also
  writes H, which the second layer's weight gradient reads. Only P is kept (or, with
  ``recompute_fc1``, only ``x``: the backward computes P again).

That is two passes over the hidden map fewer each way, and one hidden map less kept.
The first layer's bias gradient comes from the backward kernel's tiles (no pass reads
dP for it), the second's is a matrix-vector product (``ops/linear.py``'s reason), and
the other products are cuBLAS's.
"""
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
import triton

from ...linear import column_sums
from ...policy import autocast_dtype
from . import mlp_kernels as kernels
from .accumulate import sum_partials

# Launch settings per kernel: (BLOCK_M, BLOCK_N cap, BLOCK_K cap, warps, stages). The
# tile's N and K shrink to the matrix's (powers of two). Chosen so that no thread
# spills registers on sm_90 (ptxas): about 64 accumulator elements a thread. The sweep
# (`tools/benchmark.py kernels --sweep --parts mlp`; docs/benchmark_history.md) found
# faster tiles, but none near cuBLAS with GELU's passes, so the op stays off by
# default. The backward's epilogue holds the product, P and GELU's terms at once, so
# its tile is half the forward's; at 128 x 128 it spilled with 4 or 8 warps.
FWD_TILES: Dict[str, int] = dict(BLOCK_M=128, BLOCK_N=128, BLOCK_K=64, GROUP_M=8,
                                 num_warps=8, num_stages=3)
BWD_TILES: Dict[str, int] = dict(BLOCK_M=128, BLOCK_N=64, BLOCK_K=64, GROUP_M=8,
                                 num_warps=8, num_stages=3)
DTYPES = (torch.float16, torch.bfloat16)


def _launch(tiles: Dict[str, int], M: int, N: int, K: int) -> Tuple[int, Dict[str, int]]:
    """(programs, constexprs and launch options) for an (M, N) output over K."""
    cfg = dict(tiles)
    cfg['BLOCK_N'] = min(cfg['BLOCK_N'], max(16, triton.next_power_of_2(N)))
    cfg['BLOCK_K'] = min(cfg['BLOCK_K'], max(16, triton.next_power_of_2(K)))
    return triton.cdiv(M, cfg['BLOCK_M']) * triton.cdiv(N, cfg['BLOCK_N']), cfg


def gelu_linear(p: torch.Tensor, w: torch.Tensor, b: Optional[torch.Tensor]) -> torch.Tensor:
    """``F.linear(F.gelu(p), w, b)`` for 2-D ``p`` (M, K) and ``w`` (N, K), one dtype."""
    M, K = p.shape
    N = w.shape[0]
    y = torch.empty(M, N, device=p.device, dtype=p.dtype)
    grid, cfg = _launch(FWD_TILES, M, N, K)
    kernels._gelu_linear_fwd[(grid, )](p, w, b if b is not None else w, y, M, N, K,
                                       p.stride(0), w.stride(0), y.stride(0),
                                       HAS_BIAS=b is not None, **cfg)
    return y


def linear_gelu_backward(g: torch.Tensor, w: torch.Tensor, p: torch.Tensor
                         ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(dP, H, dP.sum(0))``: ``dP = (g @ w) * GELU'(p)`` and ``H = GELU(p)``, for
    ``g`` (M, K), ``w`` (K, N) and ``p`` (M, N); the column sums (float32) from the
    kernel's per-tile sums, added in a fixed order."""
    M, K = g.shape
    N = w.shape[1]
    dp = torch.empty(M, N, device=p.device, dtype=p.dtype)
    h = torch.empty_like(dp)
    grid, cfg = _launch(BWD_TILES, M, N, K)
    db = torch.empty(triton.cdiv(M, cfg['BLOCK_M']), N, device=p.device,
                     dtype=torch.float32)
    kernels._linear_gelu_bwd[(grid, )](g, w, p, dp, h, db, M, N, K, g.stride(0),
                                       w.stride(0), p.stride(0), dp.stride(0), h.stride(0),
                                       **cfg)
    return dp, h, sum_partials(db)


class _GeluMlp(torch.autograd.Function):
    """``fc2(GELU(fc1(x)))`` in ``dtype``; gradients in each input's dtype."""

    @staticmethod
    def forward(ctx, x, w1, b1, w2, b2, dtype, recompute_fc1):
        shape = x.shape
        xc = x.reshape(-1, shape[-1]).to(dtype)
        w1c, b1c, w2c, b2c = (t.to(dtype) for t in (w1, b1, w2, b2))
        p = F.linear(xc, w1c, b1c)
        y = gelu_linear(p, w2c, b2c)
        ctx.save_for_backward(xc, w1c, b1c, w2c, None if recompute_fc1 else p)
        ctx.dtypes = (x.dtype, w1.dtype, b1.dtype, w2.dtype, b2.dtype)
        ctx.shape = shape
        return y.view(*shape[:-1], w2.shape[0])

    @staticmethod
    def backward(ctx, grad):
        xc, w1c, b1c, w2c, p = ctx.saved_tensors
        if p is None:
            p = F.linear(xc, w1c, b1c)
        g = grad.reshape(-1, grad.shape[-1]).to(w2c.dtype).contiguous()
        dp, h, db1 = linear_gelu_backward(g, w2c, p)
        x_dtype, w1_dtype, b1_dtype, w2_dtype, b2_dtype = ctx.dtypes
        needs = ctx.needs_input_grad
        dx = (dp @ w1c).to(x_dtype).view(ctx.shape) if needs[0] else None
        dw1 = (dp.t() @ xc).to(w1_dtype) if needs[1] else None
        db1 = db1.to(b1_dtype) if needs[2] else None
        dw2 = (g.t() @ h).to(w2_dtype) if needs[3] else None
        db2 = column_sums(g).to(b2_dtype) if needs[4] else None
        return dx, dw1, db1, dw2, db2, None, None


def gelu_mlp(x: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor,
             b2: torch.Tensor, recompute_fc1: bool = False) -> torch.Tensor:
    """``F.linear(F.gelu(F.linear(x, w1, b1)), w2, b2)`` computed in the autocast dtype
    (``x``'s without autocast; float16 or bfloat16), keeping ``x`` and the first
    layer's output for the backward (only ``x`` with ``recompute_fc1``)."""
    dtype = autocast_dtype(x.device.type) or x.dtype
    if dtype not in DTYPES:
        raise ValueError(f'gelu_mlp computes in float16 or bfloat16, not {dtype}')
    with torch.autocast(x.device.type, enabled=False):
        return _GeluMlp.apply(x, w1, b1, w2, b2, dtype, recompute_fc1)
