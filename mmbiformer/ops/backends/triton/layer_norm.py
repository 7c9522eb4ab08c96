"""LayerNorm over the last dimension, optionally fused with the residual add before
it, over the Triton kernels of ``layer_norm_kernels.py``, with autograd.

``add_layer_norm(x, r, weight, bias, eps, scale)`` returns ``(xo, y)``: the residual
sum ``xo = x + r * scale[sample]`` and ``y = layer_norm(xo)``, in one pass over
memory forward and one backward (where the gradient reaching ``xo`` from later uses is
added to the norm's input gradient). ``r=None`` is a plain LayerNorm of ``x``.

Dtypes are those of the unfused ops under autocast: ``xo`` in the promoted dtype of
``x`` and ``r``, ``y`` in the autocast dtype when autocast is on (the dtype the next
Linear would cast it to; PyTorch's own LayerNorm returns float32 there, which then
takes two copies), otherwise in ``xo``'s; statistics and sums in float32 (float64 for
float64 inputs, as the tests use).
"""
from typing import Optional, Tuple

import torch
import triton

from ...policy import autocast_dtype
from . import layer_norm_kernels as kernels
from .accumulate import acc_dtype, acc_tl, partial_sum_programs, sum_partials

# Elements of one program's tile (BLOCK_M rows x BLOCK_C channels), forward and
# backward, and the warps of each; the backward runs a few programs per multiprocessor,
# each over several row blocks. The backward's tile is the larger one its sweep picked
# (docs/benchmark_history.md, run 19; `tools/benchmark.py kernels --sweep --parts layer_norm`).
TILE = 4096
BWD_TILE = 8192
NUM_WARPS = 4
BWD_PROGRAMS_PER_SM = 4
# Sum the weight and bias gradients over rows once, at the end (a tile-shaped
# accumulator: more registers), rather than per row block across threads. Off until
# timed on a GPU (`tools/benchmark.py kernels`).
BWD_DEFER = False
# Row blocks of the backward's walk in flight at once (1: none ahead).
BWD_STAGES = 1


def _blocks(C: int, tile: int) -> Tuple[int, int]:
    block_c = triton.next_power_of_2(C)
    return max(1, tile // block_c), block_c


def _as_nhwc(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """(N, ..., C) as (N, H, W, C): the kernels count rows per sample as H * W."""
    if t is None or t.dim() == 4:
        return t
    return t.reshape(t.shape[0], -1, 1, t.shape[-1])


class _AddLayerNorm(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x, r, scale, weight, bias, eps, y_dtype):
        shape = x.shape
        x, r = _as_nhwc(x).contiguous(), _as_nhwc(r)
        N, H, W, C = x.shape
        M = x.numel() // C
        block_m, block_c = _blocks(C, TILE)
        acc = acc_dtype(x.dtype)
        mean = torch.empty(M, device=x.device, dtype=acc)
        rstd = torch.empty(M, device=x.device, dtype=acc)
        if r is not None:
            if r.shape != x.shape:
                raise ValueError(f'add_layer_norm: x {tuple(x.shape)} and r '
                                 f'{tuple(r.shape)} differ')
            xo = torch.empty(x.shape, device=x.device,
                             dtype=torch.promote_types(x.dtype, r.dtype))
            r_strides = r.stride()
        else:
            xo, r_strides = x, (0, 0, 0, 0)
        y = torch.empty(x.shape, device=x.device, dtype=y_dtype or xo.dtype)
        kernels._add_ln_fwd[(triton.cdiv(M, block_m), )](
            x, r if r is not None else x, scale if scale is not None else x, weight, bias,
            xo, y, mean, rstd, M, C, H * W, W, *r_strides, eps,
            HAS_R=r is not None, HAS_SCALE=scale is not None, BLOCK_M=block_m,
            BLOCK_C=block_c, ACC=acc_tl(x.dtype), num_warps=NUM_WARPS)
        ctx.save_for_backward(xo, mean, rstd, weight, scale)
        ctx.has_r = r is not None
        ctx.r_dtype = None if r is None else r.dtype
        ctx.rows_per_sample = H * W
        ctx.shape = shape
        ctx.set_materialize_grads(False)
        if r is None:
            return y.view(shape)
        return xo.view(shape), y.view(shape)

    @staticmethod
    def backward(ctx, *grads):
        xo, mean, rstd, weight, scale = ctx.saved_tensors
        dxo, dy = grads if ctx.has_r else (None, grads[0])
        C = xo.shape[-1]
        M = xo.numel() // C
        if dy is None:
            dy = torch.zeros(xo.shape, device=xo.device, dtype=xo.dtype)
        dy = dy.reshape(xo.shape).contiguous()
        dxo = None if dxo is None else dxo.reshape(xo.shape).contiguous()
        block_m, block_c = _blocks(C, BWD_TILE)
        n_blocks = triton.cdiv(M, block_m)
        progs = partial_sum_programs(n_blocks, xo.device, BWD_PROGRAMS_PER_SM)
        acc = acc_dtype(xo.dtype)
        # Both partial sums in one buffer (row p: dW, then dB), added up by one launch.
        ws = torch.empty(progs, 2, C, device=xo.device, dtype=acc)
        dx = torch.empty_like(xo)
        dr = (torch.empty(xo.shape, device=xo.device, dtype=ctx.r_dtype)
              if scale is not None else dx)
        kernels._add_ln_bwd[(progs, )](
            xo, dy, dxo if dxo is not None else dy, mean, rstd, weight,
            scale if scale is not None else weight, dx, dr, ws, ws[:, 1], 2 * C,
            M, C, ctx.rows_per_sample, n_blocks,
            HAS_DXO=dxo is not None, HAS_SCALE=scale is not None, BLOCK_M=block_m,
            BLOCK_C=block_c, DEFER=BWD_DEFER, STAGES=BWD_STAGES, ACC=acc_tl(xo.dtype),
            num_warps=NUM_WARPS)
        dw, db = sum_partials(ws).to(weight.dtype).unbind(0)
        dx = dx.view(ctx.shape)
        if not ctx.has_r:
            return dx, None, None, dw, db, None, None
        dr = dr.view(ctx.shape) if scale is not None else dx.to(ctx.r_dtype)
        return dx, dr, None, dw, db, None, None


def add_layer_norm(x: torch.Tensor, r: torch.Tensor, weight: torch.Tensor,
                   bias: torch.Tensor, eps: float,
                   scale: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(xo, layer_norm(xo))`` with ``xo = x + r * scale[:, None, ...]``: x, r (N, ...,
    C) (r may be any strided NHWC view), weight and bias (C,), scale (N,) or None (per
    sample, as DropPath scales a residual branch)."""
    y_dtype = autocast_dtype(x.device.type)
    with torch.autocast(x.device.type, enabled=False):
        return _AddLayerNorm.apply(x, r, scale, weight, bias, eps, y_dtype)


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
               eps: float, y_dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """``F.layer_norm`` over the last dimension of ``x``, in ``y_dtype`` (default: the
    autocast dtype when autocast is on, else ``x``'s)."""
    y_dtype = y_dtype or autocast_dtype(x.device.type)
    with torch.autocast(x.device.type, enabled=False):
        return _AddLayerNorm.apply(x, None, None, weight, bias, eps, y_dtype)
