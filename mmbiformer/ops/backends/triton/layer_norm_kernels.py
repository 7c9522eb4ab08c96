"""Triton kernels of LayerNorm over the channels of row-major tokens, with an optional
residual add in the same pass (``layer_norm.py`` wraps them).

PyTorch's LayerNorm kernels give each row a thread block; BiFormer's rows are short
(64 to 512 channels) and many (400k at stage 1 of a 128-image batch), and there they
ran at a tenth of the memory bandwidth (docs/benchmark_history.md, run 5). Here a program
normalises a tile of BLOCK_M rows x BLOCK_C channels at once.

Forward: ``xo = x + r * scale[sample]`` (r, scale optional), rounded to xo's dtype and
normalised as stored (as an add followed by LayerNorm would), ``y = (xo - mean) * rstd
* w + b``. Backward: ``dx = dxo + rstd * (g - mean(g) - xhat * mean(g * xhat))`` with
``g = dy * w``; the weight and bias gradients as per-program partial sums (a fixed
order: deterministic).
"""
import triton
import triton.language as tl


@triton.jit
def _rows(pid, M, C, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
    rows = pid * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_C)
    rmask = rows < M
    mask = rmask[:, None] & (cols < C)[None, :]
    return rows, cols, rmask, mask, rows[:, None].to(tl.int64) * C + cols[None, :]


@triton.jit
def _r_offsets(rows, cols, HW, W, rs_n, rs_h, rs_w):
    """Offsets of the residual's elements: it may be any NHWC view (a permuted NCHW
    map), rows counted as n * H * W + h * W + w, channels of stride 1."""
    rows = rows.to(tl.int64)
    n = rows // HW
    hw = rows % HW
    return (n * rs_n + (hw // W) * rs_h + (hw % W) * rs_w)[:, None] + cols[None, :]


@triton.jit
def _add_ln_fwd(X, R, SCALE, W, B, XO, Y, MEAN, RSTD,
                M, C, HW, Wd, rs_n, rs_h, rs_w, rs_c, eps,
                HAS_R: tl.constexpr, HAS_SCALE: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr, ACC: tl.constexpr):
    rows, cols, rmask, mask, off = _rows(tl.program_id(0), M, C, BLOCK_M, BLOCK_C)
    x = tl.load(X + off, mask=mask, other=0.).to(ACC)
    if HAS_R:
        r_off = _r_offsets(rows, cols * rs_c, HW, Wd, rs_n, rs_h, rs_w)
        r = tl.load(R + r_off, mask=mask, other=0.).to(ACC)
        if HAS_SCALE:
            r = r * tl.load(SCALE + rows // HW, mask=rmask, other=0.).to(ACC)[:, None]
        xo = (x + r).to(XO.dtype.element_ty)
        tl.store(XO + off, xo, mask=mask)
        x = xo.to(ACC)
    mean = tl.sum(x, 1) / C
    xc = tl.where(mask, x - mean[:, None], 0.)
    rstd = 1. / tl.sqrt(tl.sum(xc * xc, 1) / C + eps)
    w = tl.load(W + cols, mask=cols < C, other=0.).to(ACC)
    b = tl.load(B + cols, mask=cols < C, other=0.).to(ACC)
    y = xc * rstd[:, None] * w[None, :] + b[None, :]
    tl.store(Y + off, y.to(Y.dtype.element_ty), mask=mask)
    tl.store(MEAN + rows, mean, mask=rmask)
    tl.store(RSTD + rows, rstd, mask=rmask)


@triton.jit
def _add_ln_bwd(XO, DY, DXO, MEAN, RSTD, W, SCALE, DX, DR, DWP, DBP, s_p,
                M, C, HW, n_blocks,
                HAS_DXO: tl.constexpr, HAS_SCALE: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr, DEFER: tl.constexpr,
                STAGES: tl.constexpr, ACC: tl.constexpr):
    """Row blocks pid, pid + programs, ...; dW and dB partial sums of those blocks
    go to row ``pid`` of DWP / DBP (rows ``s_p`` apart). With ``DEFER`` they are summed
    over the rows once, at the end (a tile-shaped accumulator), not per block across the
    threads.
    ``STAGES`` > 1 pipelines the walk over row blocks: the loads of the next
    STAGES - 1 blocks are in flight while one is computed (without, each block waits
    for its own loads: bound by memory latency, as the depthwise weight gradient was)."""
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_C)
    w = tl.load(W + cols, mask=cols < C, other=0.).to(ACC)
    dw = tl.zeros([BLOCK_C], ACC)
    db = tl.zeros([BLOCK_C], ACC)
    dw2 = tl.zeros([BLOCK_M, BLOCK_C], ACC)
    db2 = tl.zeros([BLOCK_M, BLOCK_C], ACC)
    for blk in tl.range(pid, n_blocks, tl.num_programs(0), num_stages=STAGES):
        rows, cols, rmask, mask, off = _rows(blk, M, C, BLOCK_M, BLOCK_C)
        xo = tl.load(XO + off, mask=mask, other=0.).to(ACC)
        dy = tl.load(DY + off, mask=mask, other=0.).to(ACC)
        mean = tl.load(MEAN + rows, mask=rmask, other=0.)
        rstd = tl.load(RSTD + rows, mask=rmask, other=0.)
        xhat = tl.where(mask, (xo - mean[:, None]) * rstd[:, None], 0.)
        g = dy * w[None, :]
        c1 = tl.sum(xhat * g, 1) / C
        c2 = tl.sum(g, 1) / C
        dx = (g - xhat * c1[:, None] - c2[:, None]) * rstd[:, None]
        if HAS_DXO:
            dx += tl.load(DXO + off, mask=mask, other=0.).to(ACC)
        tl.store(DX + off, dx.to(DX.dtype.element_ty), mask=mask)
        if HAS_SCALE:
            s = tl.load(SCALE + rows // HW, mask=rmask, other=0.).to(ACC)
            tl.store(DR + off, (dx * s[:, None]).to(DR.dtype.element_ty), mask=mask)
        if DEFER:
            dw2 += dy * xhat
            db2 += dy
        else:
            dw += tl.sum(dy * xhat, 0)
            db += tl.sum(dy, 0)
    if DEFER:
        dw = tl.sum(dw2, 0)
        db = tl.sum(db2, 0)
    tl.store(DWP + pid * s_p + cols, dw, mask=cols < C)
    tl.store(DBP + pid * s_p + cols, db, mask=cols < C)
