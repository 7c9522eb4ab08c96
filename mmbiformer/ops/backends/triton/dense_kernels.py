"""Triton kernels of BRA's token attention on small maps: every token against every
token of its image, the routing applied as a mask.

Where regions are small (4 tokens per region at stage 3 of a 224 input), a query tile
of the routed kernels (``kernels.py``, one region per tile, at least 16 rows) is mostly
empty, and their dK/dV pass walks long inverse-routing lists of 4-token regions. Here
tiles run over the map's tokens in raster order instead, so they are full; a query
attends to key ``j`` iff bit ``region(j)`` of ``KEEP[n, region(query)]`` is set (the
routing as one int64 bit mask per query region: at most 64 regions). That costs
``H*W / (topk * L)`` times the routed products (3x at stage 3) on tensor cores that the
small tiles left idle, and needs neither the region layout nor inverse routing: the
dK/dV kernel masks the transposed products the same way, so it is deterministic without
workspace.

q, k, v are read from the NHWC projection ``qkv`` (N, H, W, 2*QD + DV) as in
``kernels.py``; the output is written NHWC; log-sum-exp (base 2) and ``delta`` are
indexed ``((n * HEADS + head) * H * W + token)``.
"""
import triton
import triton.language as tl

from .kernels import online_softmax_step


@triton.jit
def _raster(offs, W, S, RH, RW):
    """Row, column and region of raster tokens ``offs`` of a W-wide map."""
    y = offs // W
    x = offs % W
    return y, x, (y // RH) * S + x // RW


@triton.jit
def _routes(bits, k_region):
    """(rows, cols) bool: the query rows' routing masks ``bits`` have ``k_region`` set."""
    return ((bits[:, None] >> k_region[None, :].to(tl.int64)) & 1) != 0


@triton.jit
def _tokens(base, offs, mask, W, S, RH, RW, s_h, s_w, ch0, C: tl.constexpr,
            BLOCK_C: tl.constexpr):
    """Channels ``ch0 .. ch0 + C`` of raster tokens ``offs`` (zero where masked), their
    row offsets and regions."""
    y, x, region = _raster(offs, W, S, RH, RW)
    row = y * s_h + x * s_w
    offs_c = tl.arange(0, BLOCK_C)
    val = tl.load(base + row[:, None] + ch0 + offs_c[None, :],
                  mask=mask[:, None] & (offs_c < C)[None, :], other=0.)
    return val, row, region


@triton.jit
def _query_tile(QKV, KEEP, s_n, s_h, s_w, S, RH, RW, R, W, HW, CQ: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_DQ: tl.constexpr):
    """This program's queries (grid: query tile, head, image): head, image, the image's
    qkv base, token offsets and mask, q, row offsets and routing masks."""
    hd = tl.program_id(1)
    n = tl.program_id(2).to(tl.int64)
    qkv = QKV + n * s_n
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < HW
    q, q_row, q_region = _tokens(qkv, offs_m, mask_m, W, S, RH, RW, s_h, s_w, hd * CQ, CQ,
                                 BLOCK_DQ)
    bits = tl.load(KEEP + n * R + q_region, mask=mask_m, other=0)
    return hd, n, qkv, offs_m, mask_m, q, q_row, bits


@triton.jit
def _key_scores(qkv, q, bits, start, qk_scale, s_h, s_w, S, RH, RW, W, HW, QD, hd,
                CQ: tl.constexpr, CV: tl.constexpr, BLOCK_N: tl.constexpr,
                BLOCK_DQ: tl.constexpr, BLOCK_DV: tl.constexpr, PREC: tl.constexpr,
                ACC: tl.constexpr):
    """Keys ``start .. start + BLOCK_N`` of the map: k, v, the queries' base-2 scores
    against them and which (query, key) pairs the routing keeps."""
    offs_n = start + tl.arange(0, BLOCK_N)
    mask_n = offs_n < HW
    k, _, k_region = _tokens(qkv, offs_n, mask_n, W, S, RH, RW, s_h, s_w, QD + hd * CQ, CQ,
                             BLOCK_DQ)
    v, _, _ = _tokens(qkv, offs_n, mask_n, W, S, RH, RW, s_h, s_w, 2 * QD + hd * CV, CV,
                      BLOCK_DV)
    keep = _routes(bits, k_region) & mask_n[None, :]
    s = tl.dot(q, tl.trans(k), input_precision=PREC, out_dtype=ACC) * qk_scale
    return k, v, s, keep


@triton.jit
def _dense_fwd(QKV, KEEP, OUT, LSE, s_n, s_h, s_w, so_n, so_h, so_w,
               qk_scale, S, RH, RW, R, W, HW, HEADS, QD,
               CQ: tl.constexpr, CV: tl.constexpr, BLOCK_M: tl.constexpr,
               BLOCK_N: tl.constexpr, BLOCK_DQ: tl.constexpr, BLOCK_DV: tl.constexpr,
               PREC: tl.constexpr, ACC: tl.constexpr):
    """grid (query tiles, heads, images): online softmax over all key tiles."""
    # No name is reused for values of another type: Triton types the loop's variables,
    # ``_`` included (an int row index here and a float tile in the loop did not compile).
    hd, n, qkv, offs_m, mask_m, q, q_row, bits = _query_tile(
        QKV, KEEP, s_n, s_h, s_w, S, RH, RW, R, W, HW, CQ, BLOCK_M, BLOCK_DQ)
    m_i = tl.full([BLOCK_M], float('-inf'), ACC)
    l_i = tl.zeros([BLOCK_M], ACC)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], ACC)
    for start in range(0, HW, BLOCK_N):
        k, v, s, keep = _key_scores(qkv, q, bits, start, qk_scale, s_h, s_w, S, RH, RW, W,
                                    HW, QD, hd, CQ, CV, BLOCK_N, BLOCK_DQ, BLOCK_DV, PREC,
                                    ACC)
        s = tl.where(keep, s, float('-inf'))
        m_i, l_i, acc = online_softmax_step(s, v, m_i, l_i, acc, PREC, ACC)
    l_safe = tl.where(l_i > 0, l_i, 1.)  # padded query rows only
    acc = acc / l_safe[:, None]
    y, x, _ = _raster(offs_m, W, S, RH, RW)
    offs_dv = tl.arange(0, BLOCK_DV)
    out = OUT + n * so_n + y[:, None] * so_h + x[:, None] * so_w + hd * CV + offs_dv[None, :]
    tl.store(out, acc.to(OUT.dtype.element_ty), mask=mask_m[:, None] & (offs_dv < CV)[None, :])
    tl.store(LSE + (n * HEADS + hd) * HW + offs_m, m_i + tl.log2(l_safe), mask=mask_m)


@triton.jit
def _dense_bwd_dq(QKV, KEEP, OUT, DOUT, LSE, DELTA, DQKV, s_n, s_h, s_w, so_n, so_h, so_w,
                  qk_scale, scale, S, RH, RW, R, W, HW, HEADS, QD,
                  CQ: tl.constexpr, CV: tl.constexpr, BLOCK_M: tl.constexpr,
                  BLOCK_N: tl.constexpr, BLOCK_DQ: tl.constexpr, BLOCK_DV: tl.constexpr,
                  PREC: tl.constexpr, ACC: tl.constexpr):
    """grid as the forward: ``delta = rowsum(dO * O)`` and dQ."""
    hd, n, qkv, offs_m, mask_m, q, q_row, bits = _query_tile(
        QKV, KEEP, s_n, s_h, s_w, S, RH, RW, R, W, HW, CQ, BLOCK_M, BLOCK_DQ)
    do, _, _ = _tokens(DOUT + n * so_n, offs_m, mask_m, W, S, RH, RW, so_h, so_w, hd * CV,
                       CV, BLOCK_DV)
    o, _, _ = _tokens(OUT + n * so_n, offs_m, mask_m, W, S, RH, RW, so_h, so_w, hd * CV,
                      CV, BLOCK_DV)
    delta = tl.sum(do.to(ACC) * o.to(ACC), 1)
    stats = (n * HEADS + hd) * HW + offs_m
    tl.store(DELTA + stats, delta, mask=mask_m)
    lse = tl.load(LSE + stats, mask=mask_m, other=0.)
    dq = tl.zeros([BLOCK_M, BLOCK_DQ], ACC)
    for start in range(0, HW, BLOCK_N):
        k, v, s, keep = _key_scores(qkv, q, bits, start, qk_scale, s_h, s_w, S, RH, RW, W,
                                    HW, QD, hd, CQ, CV, BLOCK_N, BLOCK_DQ, BLOCK_DV, PREC,
                                    ACC)
        p = tl.where(keep, tl.exp2(s - lse[:, None]), 0.)
        dp = tl.dot(do, tl.trans(v), input_precision=PREC, out_dtype=ACC)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PREC, out_dtype=ACC)
    offs_dq = tl.arange(0, BLOCK_DQ)
    tl.store(DQKV + n * s_n + q_row[:, None] + hd * CQ + offs_dq[None, :],
             (dq * scale).to(DQKV.dtype.element_ty),
             mask=mask_m[:, None] & (offs_dq < CQ)[None, :])


@triton.jit
def _dense_bwd_dkv(QKV, KEEP, DOUT, LSE, DELTA, DQKV, s_n, s_h, s_w, so_n, so_h, so_w,
                   qk_scale, scale, S, RH, RW, R, W, HW, HEADS, QD,
                   CQ: tl.constexpr, CV: tl.constexpr, BLOCK_M: tl.constexpr,
                   BLOCK_N: tl.constexpr, BLOCK_DQ: tl.constexpr, BLOCK_DV: tl.constexpr,
                   PREC: tl.constexpr, ACC: tl.constexpr):
    """grid (key tiles, heads, images): dK and dV of one key tile over all queries."""
    hd = tl.program_id(1)
    n = tl.program_id(2).to(tl.int64)
    qkv = QKV + n * s_n
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < HW
    k, k_row, k_region = _tokens(qkv, offs_n, mask_n, W, S, RH, RW, s_h, s_w, QD + hd * CQ,
                                 CQ, BLOCK_DQ)
    v, _, _ = _tokens(qkv, offs_n, mask_n, W, S, RH, RW, s_h, s_w, 2 * QD + hd * CV, CV,
                      BLOCK_DV)
    dk = tl.zeros([BLOCK_N, BLOCK_DQ], ACC)
    dv = tl.zeros([BLOCK_N, BLOCK_DV], ACC)
    for start in range(0, HW, BLOCK_M):
        offs_m = start + tl.arange(0, BLOCK_M)
        mask_m = offs_m < HW
        q, _, q_region = _tokens(qkv, offs_m, mask_m, W, S, RH, RW, s_h, s_w, hd * CQ, CQ,
                                 BLOCK_DQ)
        do, _, _ = _tokens(DOUT + n * so_n, offs_m, mask_m, W, S, RH, RW, so_h, so_w,
                           hd * CV, CV, BLOCK_DV)
        stats = (n * HEADS + hd) * HW + offs_m
        lse = tl.load(LSE + stats, mask=mask_m, other=0.)
        delta = tl.load(DELTA + stats, mask=mask_m, other=0.)
        bits = tl.load(KEEP + n * R + q_region, mask=mask_m, other=0)
        # (keys, queries): the transposed test.
        keep = (((bits[None, :] >> k_region[:, None].to(tl.int64)) & 1) != 0) & mask_m[None, :]
        s_t = tl.dot(k, tl.trans(q), input_precision=PREC, out_dtype=ACC) * qk_scale
        p_t = tl.where(keep, tl.exp2(s_t - lse[None, :]), 0.)
        dv += tl.dot(p_t.to(do.dtype), do, input_precision=PREC, out_dtype=ACC)
        dp_t = tl.dot(v, tl.trans(do), input_precision=PREC, out_dtype=ACC)
        ds_t = p_t * (dp_t - delta[None, :])
        dk += tl.dot(ds_t.to(q.dtype), q, input_precision=PREC, out_dtype=ACC)
    offs_dq = tl.arange(0, BLOCK_DQ)
    offs_dv = tl.arange(0, BLOCK_DV)
    out = DQKV + n * s_n + k_row[:, None]
    tl.store(out + QD + hd * CQ + offs_dq[None, :], (dk * scale).to(DQKV.dtype.element_ty),
             mask=mask_n[:, None] & (offs_dq < CQ)[None, :])
    tl.store(out + 2 * QD + hd * CV + offs_dv[None, :], dv.to(DQKV.dtype.element_ty),
             mask=mask_n[:, None] & (offs_dv < CV)[None, :])
