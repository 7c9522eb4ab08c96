"""Triton kernels of the depthwise K x K convolution on NHWC maps (stride 1, zero
padding K // 2), as BiFormer uses it twice a block: the position embedding
``x + dwconv3x3(x)`` and the LCE ``attention + dwconv5x5(v)``.

The input may be a channel slice of a wider NHWC tensor (V inside the qkv projection):
pixels are addressed by their strides and only the channel stride must be 1, so V is
read in place. Each program computes a TH x TW tile of pixels of one image for a block
of channels; the K*K shifted tiles it reads overlap, so most of them come from the
caches rather than from memory.

* ``_dwconv_nhwc``: ``Y = conv(X) + bias + RES + X`` with each of the last three
  optional; with ``FLIP`` the kernel is applied mirrored (the input gradient of the
  convolution: ``dX = conv_flipped(dY)``). ``RES`` may be ``Y`` itself (accumulate).
* ``_dwconv_nhwc_dw``: the weight and bias gradients, one row of partial sums per
  program (``sum over pixels dY * shifted X``), which the caller adds up in a fixed
  order: deterministic, no atomics.
* ``_dwconv_rows``, ``_dwconv_rows_dw``: the same two by rows of a strip (``ROWS`` in
  the launch settings), each input row loaded once per horizontal shift instead of
  once per tap.
"""
import triton
import triton.language as tl


@triton.jit
def _tile(pid_t, H, W, TH: tl.constexpr, TW: tl.constexpr):
    """Rows and columns of the pixels of tile ``pid_t`` (row-major tiles of a map)."""
    tiles_w = tl.cdiv(W, TW)
    p = tl.arange(0, TH * TW)
    h = (pid_t // tiles_w) * TH + p // TW
    w = (pid_t % tiles_w) * TW + p % TW
    return h, w, (h < H) & (w < W)


@triton.jit
def _tap_shift(ky, kx, K: tl.constexpr, FLIP: tl.constexpr):
    """Row and column shift of the input that tap (ky, kx) reads (mirrored with
    ``FLIP``)."""
    PAD: tl.constexpr = K // 2
    if FLIP:
        dy = PAD - ky
        dx = PAD - kx
    else:
        dy = ky - PAD
        dx = kx - PAD
    return dy, dx


@triton.jit
def _add_tap(acc, x_img, WT, h, w, mask_p, offs_c, mask_c, ky, kx, H, W, sw_t, sw_c,
             sx_h, sx_w, K: tl.constexpr, FLIP: tl.constexpr, ACC: tl.constexpr):
    """``acc`` plus tap (ky, kx) of the convolution (mirrored with ``FLIP``)."""
    dy, dx = _tap_shift(ky, kx, K, FLIP)
    hh = h + dy
    ww = w + dx
    ok = mask_p & (hh >= 0) & (hh < H) & (ww >= 0) & (ww < W)
    x = tl.load(x_img + (hh * sx_h + ww * sx_w)[:, None], mask=ok[:, None] & mask_c[None, :],
                other=0.)
    wt = tl.load(WT + (ky * K + kx) * sw_t + offs_c * sw_c, mask=mask_c, other=0.)
    return acc + x.to(ACC) * wt.to(ACC)[None, :]


@triton.jit
def _write_output(acc, bias, x_img, RES, Y, n, h, w, mask, offs_c, sx_h, sx_w,
                  sr_n, sr_h, sr_w, sy_n, sy_h, sy_w, HAS_BIAS: tl.constexpr,
                  HAS_RES: tl.constexpr, ADD_X: tl.constexpr, ACC: tl.constexpr):
    """``Y = acc [+ X] [+ bias] [+ RES]`` at pixels (h, w) of image n: h and w per pixel
    (a tile), or one row h and its columns w."""
    if ADD_X:
        acc += tl.load(x_img + (h * sx_h + w * sx_w)[:, None], mask=mask, other=0.).to(ACC)
    if HAS_BIAS:
        acc += bias[None, :]
    if HAS_RES:
        acc += tl.load(RES + n * sr_n + (h * sr_h + w * sr_w)[:, None] + offs_c[None, :],
                       mask=mask, other=0.).to(ACC)
    tl.store(Y + n * sy_n + (h * sy_h + w * sy_w)[:, None] + offs_c[None, :],
             acc.to(Y.dtype.element_ty), mask=mask)


# Strides stay specialized: Triton then knows they are multiples of 16 elements, so the
# pixel offsets are too and each pixel's channels load as 16-byte vectors (unspecialized,
# the loads were 2-byte scalars, several times slower: docs/benchmark_history.md run 7). H and W
# are not, so that dense training's many input sizes share one compiled kernel.
@triton.jit(do_not_specialize=['H', 'W'])
def _dwconv_nhwc(X, WT, B, RES, Y,
                 sx_n, sx_h, sx_w, sr_n, sr_h, sr_w, sy_n, sy_h, sy_w, sw_t, sw_c,
                 H, W, C,
                 K: tl.constexpr, FLIP: tl.constexpr, HAS_BIAS: tl.constexpr,
                 HAS_RES: tl.constexpr, ADD_X: tl.constexpr,
                 TH: tl.constexpr, TW: tl.constexpr, BLOCK_C: tl.constexpr,
                 UNROLL: tl.constexpr, STAGES: tl.constexpr, ACC: tl.constexpr,
                 INTERIOR: tl.constexpr = False):
    """Grid: (tiles of the map, images, channel blocks). WT: the weight as (K*K, C) with
    strides (sw_t, sw_c). With each tap's weights contiguous (sw_c == 1) a tap's are one
    vector load; as the (C, 1, K, K) parameter holds them (sw_c == K*K) each thread's
    channels are scalar loads, more load instructions than the input's.
    ``UNROLL``: 2 unrolls every tap (the compiler then hoists all K*K loads, and at 8x8
    pixels x 64 channels spills registers), 1 one row of taps (kernel rows loop at run
    time), 0 none (docs/benchmark_history.md, run 17, has the registers of each).
    ``STAGES`` > 1 software-pipelines the run-time loop (its loads go through shared
    memory, issued STAGES - 1 iterations ahead). ``INTERIOR``: a tile whose taps all
    fall inside the map (and a full channel block) loads without masks, from one
    pointer tile offset per tap (no per-pixel bounds or addresses in the loop)."""
    h, w, mask_p = _tile(tl.program_id(0), H, W, TH, TW)
    n = tl.program_id(1).to(tl.int64)
    offs_c = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask_c = offs_c < C
    x_img = X + n * sx_n + offs_c[None, :]
    acc = tl.zeros([TH * TW, BLOCK_C], ACC)
    PAD: tl.constexpr = K // 2
    inside = False
    if INTERIOR:
        tiles_w = tl.cdiv(W, TW)
        h0 = (tl.program_id(0) // tiles_w) * TH
        w0 = (tl.program_id(0) % tiles_w) * TW
        inside = ((h0 >= PAD) & (h0 + TH + PAD <= H) & (w0 >= PAD) & (w0 + TW + PAD <= W)
                  & ((tl.program_id(2) + 1) * BLOCK_C <= C))
    if inside:
        base = x_img + (h * sx_h + w * sx_w)[:, None]
        for t in tl.range(K * K, num_stages=STAGES):
            dy, dx = _tap_shift(t // K, t % K, K, FLIP)
            wt = tl.load(WT + t * sw_t + offs_c * sw_c)
            acc += tl.load(base + dy * sx_h + dx * sx_w).to(ACC) * wt.to(ACC)[None, :]
    elif UNROLL == 2:  # every tap unrolled
        for ky in tl.static_range(K):
            for kx in tl.static_range(K):
                acc = _add_tap(acc, x_img, WT, h, w, mask_p, offs_c, mask_c, ky, kx,
                               H, W, sw_t, sw_c, sx_h, sx_w, K, FLIP, ACC)
    elif UNROLL == 1:  # one row of taps unrolled, rows looped at run time
        for ky in tl.range(K, num_stages=STAGES):
            for kx in tl.static_range(K):
                acc = _add_tap(acc, x_img, WT, h, w, mask_p, offs_c, mask_c, ky, kx,
                               H, W, sw_t, sw_c, sx_h, sx_w, K, FLIP, ACC)
    else:
        for t in tl.range(K * K, num_stages=STAGES):
            acc = _add_tap(acc, x_img, WT, h, w, mask_p, offs_c, mask_c, t // K, t % K,
                           H, W, sw_t, sw_c, sx_h, sx_w, K, FLIP, ACC)
    bias = tl.zeros([BLOCK_C], ACC)
    if HAS_BIAS:
        bias = tl.load(B + offs_c, mask=mask_c, other=0.).to(ACC)
    _write_output(acc, bias, x_img, RES, Y, n, h, w, mask_p[:, None] & mask_c[None, :],
                  offs_c, sx_h, sx_w, sr_n, sr_h, sr_w, sy_n, sy_h, sy_w,
                  HAS_BIAS, HAS_RES, ADD_X, ACC)


@triton.jit(do_not_specialize=['H', 'W', 'n_chunks', 'chunks_per_prog'])
def _dwconv_nhwc_dw(X, DY, WS,
                    sx_n, sx_h, sx_w, sd_n, sd_h, sd_w,
                    H, W, C, n_chunks, chunks_per_prog,
                    K: tl.constexpr, KK_PAD: tl.constexpr, PB: tl.constexpr,
                    BLOCK_C: tl.constexpr, STAGES: tl.constexpr, ACC: tl.constexpr):
    """Grid: (programs, channel blocks). The ``n_chunks`` chunks are runs of PB pixels
    of one row (image-major, then row-major); program ``i`` covers chunks
    ``i * chunks_per_prog`` onward and writes ``WS[i]``, a (KK_PAD, C) row:
    ``[tap] = sum dY * X shifted by the tap`` for the K*K taps, and ``[K*K] = sum dY``
    (the bias gradient; K*K is odd, so KK_PAD, a power of two, has room for it).

    The taps are a dimension of the tile: each chunk loads the K*K shifted copies of
    its pixels as one (KK_PAD, PB, BLOCK_C) gather and adds its products to an
    accumulator of that shape, which is summed over the pixels once, at the end. No
    reduction across threads and no select per tap inside the loop (reducing each tap
    across the tile's pixels, then selecting its row of the result, took most of the
    time of the kernel this one replaced).

    Each program walks its chunks one after another, and a chunk's loads are small (PB
    pixels): without ``STAGES`` > 1 every iteration waits for its own loads, and the
    kernel is bound by memory latency, not bandwidth. ``STAGES`` pipelines the loop:
    the loads of the next STAGES - 1 chunks are in flight (through shared memory) while
    one is summed."""
    pid = tl.program_id(0)
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask_c = offs_c < C
    PAD: tl.constexpr = K // 2
    taps = tl.arange(0, KK_PAD)
    dy_tap = taps // K - PAD  # row and column shift of each tap
    dx_tap = taps % K - PAD
    is_tap = taps < K * K
    p = tl.arange(0, PB)
    chunks_w = tl.cdiv(W, PB)
    chunks_img = H * chunks_w
    acc = tl.zeros([KK_PAD, PB, BLOCK_C], ACC)
    acc_b = tl.zeros([PB, BLOCK_C], ACC)
    first = pid * chunks_per_prog
    last = tl.minimum(first + chunks_per_prog, n_chunks)
    for t in tl.range(first, last, num_stages=STAGES):
        n = (t // chunks_img).to(tl.int64)
        r = t % chunks_img
        h = r // chunks_w
        w = (r % chunks_w) * PB + p  # (PB,)
        ok_p = w < W
        dy = tl.load(DY + n * sd_n + h * sd_h + (w * sd_w)[:, None] + offs_c[None, :],
                     mask=ok_p[:, None] & mask_c[None, :], other=0.).to(ACC)
        hh = h + dy_tap  # (KK_PAD,)
        ww = w[None, :] + dx_tap[:, None]  # (KK_PAD, PB)
        ok = ((is_tap & (hh >= 0) & (hh < H))[:, None] & (ww >= 0) & (ww < W)
              & ok_p[None, :])
        offs = hh[:, None] * sx_h + ww * sx_w
        x = tl.load(X + n * sx_n + offs[:, :, None] + offs_c[None, None, :],
                    mask=ok[:, :, None] & mask_c[None, None, :], other=0.).to(ACC)
        acc += x * dy[None, :, :]
        acc_b += dy
    ws = WS + pid * KK_PAD * C
    tl.store(ws + taps[:, None] * C + offs_c[None, :], tl.sum(acc, 1),
             mask=is_tap[:, None] & mask_c[None, :])
    tl.store(ws + K * K * C + offs_c, tl.sum(acc_b, 0), mask=mask_c)


# -- Row-streaming kernels ---------------------------------------------------------------
# The tile kernels above read each input pixel once per tap (K*K loads of shifted tiles,
# mostly from the caches): their load instructions, not memory, bound them (run 18's
# table: 3-9x the bytes' floor). These walk the rows of a strip TW pixels wide, loading
# each input row once per horizontal shift (K loads), and keep the K output rows (or,
# for the weight gradient, the K output-gradient rows) that the row touches in
# registers, as a ring that turns one row per step: K times fewer loads per pixel.


@triton.jit
def _shifted_row(img, r, w, offs_c, mask_c, H, W, sx_h, sx_w, K: tl.constexpr,
                 ACC: tl.constexpr):
    """Row ``r`` of the strip ``w`` shifted by each of the K column offsets of a tap
    row, as a tuple of K (TW, BLOCK_C) tiles (zeros outside the map)."""
    PAD: tl.constexpr = K // 2
    row_ok = (r >= 0) & (r < H)
    xs = ()
    for kx in tl.static_range(K):
        ww = w + (kx - PAD)
        ok = row_ok & (ww >= 0) & (ww < W)
        xs = xs + (tl.load(img + r * sx_h + (ww * sx_w)[:, None],
                           mask=ok[:, None] & mask_c[None, :], other=0.).to(ACC), )
    return xs


@triton.jit
def _tap_weight(WT, t, offs_c, mask_c, sw_t, sw_c, K: tl.constexpr, FLIP: tl.constexpr,
                ACC: tl.constexpr):
    """The weights of tap ``t`` (row-major), mirrored with FLIP (the input gradient)."""
    src = K * K - 1 - t if FLIP else t
    return tl.load(WT + src * sw_t + offs_c * sw_c, mask=mask_c, other=0.).to(ACC)


@triton.jit(do_not_specialize=['H', 'W'])
def _dwconv_rows(X, WT, B, RES, Y,
                 sx_n, sx_h, sx_w, sr_n, sr_h, sr_w, sy_n, sy_h, sy_w, sw_t, sw_c,
                 H, W, C,
                 K: tl.constexpr, FLIP: tl.constexpr, HAS_BIAS: tl.constexpr,
                 HAS_RES: tl.constexpr, ADD_X: tl.constexpr,
                 RH: tl.constexpr, TW: tl.constexpr, BLOCK_C: tl.constexpr,
                 HOIST: tl.constexpr, ACC: tl.constexpr, STAGES: tl.constexpr = 1):
    """What ``_dwconv_nhwc`` computes, by rows. Grid: (strips of TW columns x chunks of
    RH rows, images, channel blocks). Input row ``r`` feeds output rows ``r - PAD`` to
    ``r + PAD``, through tap row ``K - 1 - i`` into ring entry ``i`` (output row
    ``r - PAD + i``); after it, entry 0 is complete and is written. ``HOIST`` keeps the
    K*K tap weights of a thread's channels in registers (K*K per channel it holds: few
    channels a thread, i.e. TW * BLOCK_C / threads small, or it spills), else each row
    reloads them from the cache. ``STAGES`` > 1 pipelines the walk down the rows (the
    next rows' loads in flight while one is summed)."""
    PAD: tl.constexpr = K // 2
    strips = tl.cdiv(W, TW)
    h0 = (tl.program_id(0) // strips) * RH
    w = (tl.program_id(0) % strips) * TW + tl.arange(0, TW)
    mask_w = w < W
    n = tl.program_id(1).to(tl.int64)
    offs_c = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask_c = offs_c < C
    x_img = X + n * sx_n + offs_c[None, :]
    wts = ()
    if HOIST:
        for t in tl.static_range(K * K):
            wts = wts + (_tap_weight(WT, t, offs_c, mask_c, sw_t, sw_c, K, FLIP, ACC), )
    bias = tl.zeros([BLOCK_C], ACC)
    if HAS_BIAS:
        bias = tl.load(B + offs_c, mask=mask_c, other=0.).to(ACC)
    ring = ()
    for i in tl.static_range(K):
        ring = ring + (tl.zeros([TW, BLOCK_C], ACC), )
    for r in tl.range(h0 - PAD, h0 + RH + PAD, num_stages=STAGES):
        xs = _shifted_row(x_img, r, w, offs_c, mask_c, H, W, sx_h, sx_w, K, ACC)
        fed = ()
        for i in tl.static_range(K):
            a = ring[i]
            for kx in tl.static_range(K):
                # Tap (K - 1 - i, kx); the index written out, not named: a name would
                # no longer be a compile-time constant, which tuple indexing needs.
                if HOIST:
                    wt = wts[(K - 1 - i) * K + kx]
                else:
                    wt = _tap_weight(WT, (K - 1 - i) * K + kx, offs_c, mask_c, sw_t, sw_c,
                                     K, FLIP, ACC)
                a += xs[kx] * wt[None, :]
            fed = fed + (a, )
        o = r - PAD  # the output row fed[0] completes
        _write_output(fed[0], bias, x_img, RES, Y, n, o, w,
                      (o >= h0) & (o < H) & mask_w[:, None] & mask_c[None, :], offs_c,
                      sx_h, sx_w, sr_n, sr_h, sr_w, sy_n, sy_h, sy_w,
                      HAS_BIAS, HAS_RES, ADD_X, ACC)
        ring = ()
        for i in tl.static_range(1, K):
            ring = ring + (fed[i], )
        ring = ring + (tl.zeros([TW, BLOCK_C], ACC), )


@triton.jit(do_not_specialize=['H', 'W', 'n_segs', 'segs_per_prog'])
def _dwconv_rows_dw(X, DY, WS,
                    sx_n, sx_h, sx_w, sd_n, sd_h, sd_w,
                    H, W, C, n_segs, segs_per_prog,
                    K: tl.constexpr, KK_PAD: tl.constexpr, RH: tl.constexpr,
                    TW: tl.constexpr, BLOCK_C: tl.constexpr, ACC: tl.constexpr,
                    STAGES: tl.constexpr = 1):
    """What ``_dwconv_nhwc_dw`` computes, by rows. Grid: (programs, channel blocks). A
    segment is RH rows of a strip TW columns wide of one image; program ``i`` sums
    segments ``i * segs_per_prog`` onward and writes ``WS[i]`` (rows: the K*K taps,
    then the bias). Input row ``r`` meets output-gradient rows ``r - PAD`` to
    ``r + PAD`` (ring entry ``i``: row ``r - PAD + i``, tap row ``K - 1 - i``); each
    segment's own gradient rows enter the ring once, so every row is summed once.
    ``STAGES``: as in ``_dwconv_rows``."""
    PAD: tl.constexpr = K // 2
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask_c = offs_c < C
    strips = tl.cdiv(W, TW)
    chunks = tl.cdiv(H, RH)
    acc = ()
    for t in tl.static_range(K * K):
        acc = acc + (tl.zeros([TW, BLOCK_C], ACC), )
    acc_b = tl.zeros([TW, BLOCK_C], ACC)
    first = tl.program_id(0) * segs_per_prog
    last = tl.minimum(first + segs_per_prog, n_segs)
    for s in tl.range(first, last):
        n = (s // (chunks * strips)).to(tl.int64)
        h0 = ((s // strips) % chunks) * RH
        w = (s % strips) * TW + tl.arange(0, TW)
        mask_w = w < W
        x_img = X + n * sx_n + offs_c[None, :]
        dy_img = DY + n * sd_n + offs_c[None, :]
        ring = ()
        for i in tl.static_range(K):
            ring = ring + (tl.zeros([TW, BLOCK_C], ACC), )
        for r in tl.range(h0 - PAD, h0 + RH + PAD, num_stages=STAGES):
            o = r + PAD  # the gradient row that enters the ring
            ok = (o >= h0) & (o < h0 + RH) & (o < H)
            d = tl.load(dy_img + o * sd_h + (w * sd_w)[:, None],
                        mask=ok & mask_w[:, None] & mask_c[None, :], other=0.).to(ACC)
            turned = ()
            for i in tl.static_range(1, K):
                turned = turned + (ring[i], )
            ring = turned + (d, )
            acc_b += d
            xs = _shifted_row(x_img, r, w, offs_c, mask_c, H, W, sx_h, sx_w, K, ACC)
            summed = ()
            for t in tl.static_range(K * K):
                summed = summed + (acc[t] + xs[t % K] * ring[K - 1 - t // K], )
            acc = summed
    ws = WS + tl.program_id(0) * KK_PAD * C
    for t in tl.static_range(K * K):
        tl.store(ws + t * C + offs_c, tl.sum(acc[t], 0), mask=mask_c)
    tl.store(ws + K * K * C + offs_c, tl.sum(acc_b, 0), mask=mask_c)
