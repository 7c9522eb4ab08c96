"""Depthwise K x K convolution on NHWC maps as a torch custom op over Triton kernels
(``dwconv_kernels.py``), with autograd.

``dwconv_nhwc(x, weight, bias, residual, add_input)`` returns
``conv(x) + bias [+ residual] [+ x]`` in NHWC. ``x`` may be a channel slice of a wider
tensor (only its channel stride must be 1): BRA passes V inside the qkv projection,
which is then read in place. The forward and backward are ``torch.library`` custom
ops, so ``torch.compile`` keeps each as one node.
"""
from typing import Optional, Tuple

import torch
import triton

from ...policy import forward_only, in_captured_step
from . import dwconv_kernels as kernels
from .accumulate import acc_dtype, acc_tl, partial_sum_programs, sum_partials

# Launch settings: a tile of TH x TW pixels (its K*K shifted reads overlap within the
# tile, so they come from the caches), BLOCK_C channels (64 of bf16 are one 128-byte
# line per pixel), warps per program, taps unrolled (UNROLL) and pipelined (STAGES).
# ``tools/benchmark.py kernels --sweep`` times the candidates; these were fastest in
# BiFormer-S's captured cls step on an H100 (docs/benchmark_history.md, run 18).
# ``ROWS=True`` (with RH, TW, BLOCK_C, num_warps, HOIST) runs the row-streaming kernels
# instead, in either setting: K times fewer loads a pixel, not timed yet
# (docs/benchmark_history.md, run 22).
CONFIG = dict(TH=8, TW=8, BLOCK_C=64, num_warps=2, UNROLL=0, STAGES=1)
# The weight gradient's: chunks of PB pixels of a row, BLOCK_C channels, warps per
# program, programs per multiprocessor (each writes a row of partial sums), chunks in
# flight (STAGES 4: 50 KB of shared memory a program, within every architecture's
# per-block limit; tests/triton_arch_limits.py checks it).
DW_CONFIG = dict(PB=4, BLOCK_C=64, num_warps=4, progs_per_sm=4, STAGES=4)


def _block_c(C: int, cfg: dict) -> int:
    return min(cfg['BLOCK_C'], triton.next_power_of_2(C))


def _check(x: torch.Tensor, weight: torch.Tensor) -> int:
    if x.dim() != 4 or x.stride(-1) != 1:
        raise ValueError(f'dwconv_nhwc: x must be NHWC with contiguous channels, got shape '
                         f'{tuple(x.shape)} strides {x.stride()}')
    C, k = x.shape[-1], weight.shape[-1]
    if tuple(weight.shape) != (C, 1, k, k) or k % 2 == 0:
        raise ValueError(f'dwconv_nhwc: weight must be ({C}, 1, k, k) with k odd, got '
                         f'{tuple(weight.shape)}')
    return k


def conv_nhwc_into(out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                   bias: Optional[torch.Tensor] = None,
                   residual: Optional[torch.Tensor] = None, add_input: bool = False,
                   flip: bool = False, cfg: Optional[dict] = None) -> torch.Tensor:
    """``out = conv(x) + bias + residual + x`` (the last three optional); ``flip``
    mirrors the kernel (the input gradient of the convolution). ``residual`` may be
    ``out`` itself: then the convolution is added to ``out`` in place."""
    cfg = cfg or CONFIG
    k = _check(x, weight)
    N, H, W, C = x.shape
    # (K*K, C). Inside a captured step a contiguous copy (each tap's weights one vector
    # load; the copy's launch costs nothing at replay); elsewhere the parameter's own
    # layout, read in place: no extra launch on the host's critical path (eager
    # inference is bound by host time).
    taps = weight.reshape(x.shape[-1], k * k).t()
    if in_captured_step():
        taps = taps.contiguous()
    res = residual if residual is not None else out
    block_c = _block_c(C, cfg)
    if cfg.get('ROWS'):
        RH, TW = cfg['RH'], cfg['TW']
        grid = (triton.cdiv(H, RH) * triton.cdiv(W, TW), N, triton.cdiv(C, block_c))
        kernels._dwconv_rows[grid](
            x, taps, bias if bias is not None else taps, res, out,
            *x.stride()[:3], *res.stride()[:3], *out.stride()[:3], *taps.stride(), H, W, C,
            K=k, FLIP=flip, HAS_BIAS=bias is not None, HAS_RES=residual is not None,
            ADD_X=add_input, RH=RH, TW=TW, BLOCK_C=block_c, HOIST=cfg.get('HOIST', True),
            STAGES=cfg.get('STAGES', 1), ACC=acc_tl(x.dtype),
            num_warps=cfg['num_warps'])
        return out
    TH, TW = cfg['TH'], cfg['TW']
    grid = (triton.cdiv(H, TH) * triton.cdiv(W, TW), N, triton.cdiv(C, block_c))
    kernels._dwconv_nhwc[grid](
        x, taps, bias if bias is not None else taps, res, out,
        *x.stride()[:3], *res.stride()[:3], *out.stride()[:3], *taps.stride(), H, W, C,
        K=k, FLIP=flip, HAS_BIAS=bias is not None, HAS_RES=residual is not None,
        ADD_X=add_input, TH=TH, TW=TW, BLOCK_C=block_c, UNROLL=cfg['UNROLL'],
        STAGES=cfg['STAGES'], INTERIOR=cfg.get('INTERIOR', False),
        ACC=acc_tl(x.dtype), num_warps=cfg['num_warps'])
    return out


def weight_grad(x: torch.Tensor, grad: torch.Tensor, k: int,
                cfg: Optional[dict] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """(dW (C, 1, k, k), dB (C,)) of ``conv(x)`` for the output gradient ``grad``, both
    in float32 (float64 for float64 inputs)."""
    cfg = cfg or DW_CONFIG
    N, H, W, C = x.shape
    block_c = _block_c(C, cfg)
    c_blocks = triton.cdiv(C, block_c)
    rows = cfg.get('ROWS', False)
    # Work units: row-strip segments (ROWS) or chunks of PB pixels of a row.
    n_units = (N * triton.cdiv(H, cfg['RH']) * triton.cdiv(W, cfg['TW']) if rows
               else N * H * triton.cdiv(W, cfg['PB']))
    progs = partial_sum_programs(n_units, x.device, cfg['progs_per_sm'], c_blocks)
    per_prog = triton.cdiv(n_units, progs)
    progs = triton.cdiv(n_units, per_prog)
    kk_pad = triton.next_power_of_2(k * k)  # > k * k (odd): row k * k holds dB
    ws = torch.empty(progs, kk_pad, C, device=x.device, dtype=acc_dtype(x.dtype))
    if rows:
        kernels._dwconv_rows_dw[(progs, c_blocks)](
            x, grad, ws, *x.stride()[:3], *grad.stride()[:3], H, W, C, n_units, per_prog,
            K=k, KK_PAD=kk_pad, RH=cfg['RH'], TW=cfg['TW'], BLOCK_C=block_c,
            STAGES=cfg.get('STAGES', 1), ACC=acc_tl(x.dtype), num_warps=cfg['num_warps'])
    else:
        kernels._dwconv_nhwc_dw[(progs, c_blocks)](
            x, grad, ws, *x.stride()[:3], *grad.stride()[:3], H, W, C, n_units, per_prog,
            K=k, KK_PAD=kk_pad, PB=cfg['PB'], BLOCK_C=block_c, STAGES=cfg['STAGES'],
            ACC=acc_tl(x.dtype), num_warps=cfg['num_warps'])
    total = sum_partials(ws)
    # Two tensors of their own (custom ops may not return views of one another).
    return total[:k * k].t().contiguous().view(C, 1, k, k), total[k * k].clone()


@torch.library.custom_op('mmbiformer::dwconv_nhwc', mutates_args=())
def dwconv_nhwc_op(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                   residual: Optional[torch.Tensor], add_input: bool) -> torch.Tensor:
    out = torch.empty(x.shape, device=x.device, dtype=x.dtype)
    return conv_nhwc_into(out, x, weight, bias, residual, add_input)


@dwconv_nhwc_op.register_fake
def _(x, weight, bias, residual, add_input):
    return torch.empty(x.shape, device=x.device, dtype=x.dtype)


@torch.library.custom_op('mmbiformer::dwconv_nhwc_bwd', mutates_args=())
def dwconv_nhwc_bwd(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                    add_input: bool) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    grad = grad.contiguous()
    dx = torch.empty(x.shape, device=x.device, dtype=x.dtype)
    # d(conv(x) [+ x]) / dx: the mirrored kernel over the gradient [+ the gradient].
    conv_nhwc_into(dx, grad, weight, residual=grad if add_input else None, flip=True)
    dw, db = weight_grad(x, grad, weight.shape[-1])
    return dx, dw.to(weight.dtype), db.to(weight.dtype)


@dwconv_nhwc_bwd.register_fake
def _(grad, x, weight, add_input):
    C = weight.shape[0]
    return (torch.empty(x.shape, device=x.device, dtype=x.dtype), torch.empty_like(weight),
            weight.new_empty(C))


def _setup_context(ctx, inputs, output):
    x, weight, bias, residual, add_input = inputs
    ctx.save_for_backward(x, weight)
    ctx.has_bias, ctx.has_res, ctx.add_input = (bias is not None, residual is not None,
                                               add_input)


def _backward(ctx, grad):
    x, weight = ctx.saved_tensors
    dx, dw, db = dwconv_nhwc_bwd(grad, x, weight, ctx.add_input)
    return (dx, dw, db if ctx.has_bias else None,
            grad if ctx.has_res else None, None)


dwconv_nhwc_op.register_autograd(_backward, setup_context=_setup_context)


def dwconv_nhwc(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
                residual: Optional[torch.Tensor] = None,
                add_input: bool = False) -> torch.Tensor:
    """``conv(x) + bias [+ residual] [+ x]``: x (N, H, W, C) NHWC (a channel slice of a
    wider tensor is read in place), weight (C, 1, k, k) as ``nn.Conv2d`` holds it,
    padding ``k // 2``. Output NHWC, contiguous, of x's dtype; sums in float32."""
    if x.stride(-1) != 1:
        x = x.contiguous()
    if residual is not None and residual.stride(-1) != 1:
        residual = residual.contiguous()
    if forward_only(x, weight, bias, residual):  # no custom-op dispatch
        out = torch.empty(x.shape, device=x.device, dtype=x.dtype)
        return conv_nhwc_into(out, x, weight, bias, residual, add_input)
    return dwconv_nhwc_op(x, weight, bias, residual, add_input)
