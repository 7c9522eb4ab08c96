"""Triton kernels of BRA's token-to-token attention over routed regions.

The kernels read q, k and v straight from the NHWC output of BRA's qkv projection,
``qkv`` of shape (N, S*RH, S*RW, 2*QD + DV) with channels q | k | v, by region index:
no region layout copy, no gathered K/V, no attention matrix in memory.

Region ``r`` (row-major in the S x S grid) holds the RH x RW tokens at rows
``(r // S) * RH + i`` and columns ``(r % S) * RW + j``; its token ``t`` is ``(i, j) =
(t // RW, t % RW)``. A query region attends to the ``TOPK * L`` tokens (``L = RH * RW``)
of its routed regions, taken as one flat list: key ``j`` is token ``j % L`` of region
``index[j // L]``. Small regions then still fill a key tile (16 regions of 4 tokens
make one tile of 64 keys) instead of padding each region to a tile.

* forward, one program per (query block, region x head, image): online softmax
  (FlashAttention-2), writes the output at the queries' own positions and the
  log-sum-exp (base 2) per query;
* backward without atomics, so it is deterministic and needs no zeroed buffers:
  ``_bra_bwd_dq`` (same grid as forward) writes dQ and ``delta = rowsum(dO * O)``;
  ``_bra_bwd_dkv``, one program per (key block, work item x head), loops over query
  regions that routed to its key region (an inverse routing list, CSR, cut into work
  items of at most ``chunk`` regions: routing is skewed, one region can be routed to
  by most of the map) and writes dK and dV, or partial sums that
  ``_bra_bwd_dkv_reduce`` adds in a fixed order.

Softmax runs in base 2: ``qk_scale = scale * log2(e)``. Sums and softmax statistics are
kept in ``ACC`` (float32; float64 for float64 inputs, which the tests use).
"""
import triton
import triton.language as tl


@triton.jit
def _token_rc(region, tok, S, RH, RW):
    """Row and column in the map of token ``tok`` of region ``region``."""
    return (region // S) * RH + tok // RW, (region % S) * RW + tok % RW


@triton.jit
def _query_block(QKV, s_n, s_h, s_w, S, RH, RW, HEADS, CQ: tl.constexpr,
                 BLOCK_M: tl.constexpr, BLOCK_DQ: tl.constexpr):
    """This program's queries (grid: query tile, region x head, image): region, head,
    image, tokens per region, token offsets and mask, their offsets in the map, the
    query tile and the image's qkv base."""
    pid_m = tl.program_id(0)
    r = tl.program_id(1) // HEADS
    hd = tl.program_id(1) % HEADS
    n = tl.program_id(2).to(tl.int64)
    L = RH * RW
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < L
    offs_dq = tl.arange(0, BLOCK_DQ)
    qkv = QKV + n * s_n
    qy, qx = _token_rc(r, offs_m, S, RH, RW)
    q_off = qy[:, None] * s_h + qx[:, None] * s_w
    q = tl.load(qkv + q_off + hd * CQ + offs_dq[None, :],
                mask=mask_m[:, None] & (offs_dq < CQ)[None, :], other=0.)
    return r, hd, n, L, offs_m, mask_m, qy, qx, q_off, q, qkv


@triton.jit
def online_softmax_step(s, v, m_i, l_i, acc, PREC: tl.constexpr, ACC: tl.constexpr):
    """One key tile of FlashAttention-2's forward: base-2 scores ``s`` (-inf where not
    attended), values ``v``; running row maximum, sum and output. A row with no key
    attended yet keeps maximum -inf and is shifted by 0 (its exp2 terms are 0)."""
    m_new = tl.maximum(m_i, tl.max(s, 1))
    shift = tl.where(m_new == float('-inf'), 0., m_new)
    p = tl.exp2(s - shift[:, None])
    alpha = tl.exp2(m_i - shift)
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PREC,
                                        out_dtype=ACC)
    return m_new, l_i, acc


@triton.jit
def _routed_key_tile(qkv, idx, start, n_keys, L, S, RH, RW, s_h, s_w, QD, hd,
                     CQ: tl.constexpr, CV: tl.constexpr, BLOCK_N: tl.constexpr,
                     BLOCK_DQ: tl.constexpr, BLOCK_DV: tl.constexpr):
    """Keys ``start .. start + BLOCK_N`` of the flat list of the routed regions' tokens
    (``idx``: the query region's routed region indices): their mask, k and v."""
    offs_n = start + tl.arange(0, BLOCK_N)
    mask_n = offs_n < n_keys
    region = tl.load(idx + offs_n // L, mask=mask_n, other=0)
    ky, kx = _token_rc(region, offs_n % L, S, RH, RW)
    kv = qkv + ky[:, None] * s_h + kx[:, None] * s_w
    offs_dq = tl.arange(0, BLOCK_DQ)
    offs_dv = tl.arange(0, BLOCK_DV)
    k = tl.load(kv + QD + hd * CQ + offs_dq[None, :],
                mask=mask_n[:, None] & (offs_dq < CQ)[None, :], other=0.)
    v = tl.load(kv + 2 * QD + hd * CV + offs_dv[None, :],
                mask=mask_n[:, None] & (offs_dv < CV)[None, :], other=0.)
    return mask_n, k, v


@triton.jit
def _bra_fwd(QKV, IDX, OUT, LSE,
             s_n, s_h, s_w, so_n, so_h, so_w,
             qk_scale, S, RH, RW, R, TOPK, HEADS, QD,
             CQ: tl.constexpr, CV: tl.constexpr,
             BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
             BLOCK_DQ: tl.constexpr, BLOCK_DV: tl.constexpr, PREC: tl.constexpr,
             ACC: tl.constexpr):
    r, hd, n, L, offs_m, mask_m, qy, qx, q_off, q, qkv = _query_block(
        QKV, s_n, s_h, s_w, S, RH, RW, HEADS, CQ, BLOCK_M, BLOCK_DQ)
    n_keys = TOPK * L
    offs_dv = tl.arange(0, BLOCK_DV)
    mask_dv = offs_dv < CV

    m_i = tl.full([BLOCK_M], float('-inf'), ACC)
    l_i = tl.zeros([BLOCK_M], ACC)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], ACC)
    idx = IDX + (n * R + r) * TOPK
    for start in range(0, n_keys, BLOCK_N):
        mask_n, k, v = _routed_key_tile(qkv, idx, start, n_keys, L, S, RH, RW, s_h, s_w,
                                        QD, hd, CQ, CV, BLOCK_N, BLOCK_DQ, BLOCK_DV)
        s = tl.dot(q, tl.trans(k), input_precision=PREC, out_dtype=ACC) * qk_scale
        s = tl.where(mask_n[None, :], s, float('-inf'))
        m_i, l_i, acc = online_softmax_step(s, v, m_i, l_i, acc, PREC, ACC)

    acc = acc / l_i[:, None]
    out = OUT + n * so_n + qy[:, None] * so_h + qx[:, None] * so_w + hd * CV + offs_dv[None, :]
    tl.store(out, acc.to(OUT.dtype.element_ty), mask=mask_m[:, None] & mask_dv[None, :])
    stats = ((n * R + r) * HEADS + hd) * L + offs_m
    tl.store(LSE + stats, m_i + tl.log2(l_i), mask=mask_m)


@triton.jit
def _bra_bwd_dq(QKV, IDX, OUT, DOUT, LSE, DELTA, DQKV,
                s_n, s_h, s_w, so_n, so_h, so_w,
                qk_scale, scale, S, RH, RW, R, TOPK, HEADS, QD,
                CQ: tl.constexpr, CV: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                BLOCK_DQ: tl.constexpr, BLOCK_DV: tl.constexpr, PREC: tl.constexpr,
                ACC: tl.constexpr):
    r, hd, n, L, offs_m, mask_m, qy, qx, q_off, q, qkv = _query_block(
        QKV, s_n, s_h, s_w, S, RH, RW, HEADS, CQ, BLOCK_M, BLOCK_DQ)
    n_keys = TOPK * L
    offs_dq = tl.arange(0, BLOCK_DQ)
    offs_dv = tl.arange(0, BLOCK_DV)
    mask_q = mask_m[:, None] & (offs_dq < CQ)[None, :]
    mask_o = mask_m[:, None] & (offs_dv < CV)[None, :]
    o_off = n * so_n + qy[:, None] * so_h + qx[:, None] * so_w + hd * CV + offs_dv[None, :]
    do = tl.load(DOUT + o_off, mask=mask_o, other=0.)
    o = tl.load(OUT + o_off, mask=mask_o, other=0.)
    delta = tl.sum(do.to(ACC) * o.to(ACC), 1)
    stats = ((n * R + r) * HEADS + hd) * L + offs_m
    tl.store(DELTA + stats, delta, mask=mask_m)
    lse = tl.load(LSE + stats, mask=mask_m, other=0.)

    dq = tl.zeros([BLOCK_M, BLOCK_DQ], ACC)
    idx = IDX + (n * R + r) * TOPK
    for start in range(0, n_keys, BLOCK_N):
        mask_n, k, v = _routed_key_tile(qkv, idx, start, n_keys, L, S, RH, RW, s_h, s_w,
                                        QD, hd, CQ, CV, BLOCK_N, BLOCK_DQ, BLOCK_DV)
        s = tl.dot(q, tl.trans(k), input_precision=PREC, out_dtype=ACC) * qk_scale
        p = tl.where(mask_n[None, :], tl.exp2(s - lse[:, None]), 0.)
        dp = tl.dot(do, tl.trans(v), input_precision=PREC, out_dtype=ACC)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PREC, out_dtype=ACC)

    dq = dq * scale
    tl.store(DQKV + n * s_n + q_off + hd * CQ + offs_dq[None, :],
             dq.to(DQKV.dtype.element_ty), mask=mask_q)


@triton.jit
def _bra_bwd_dkv(QKV, DOUT, LSE, DELTA, ROUTED_BY, ITEMS, DQKV, WS,
                 s_n, s_h, s_w, so_n, so_h, so_w, ws_s,
                 qk_scale, scale, S, RH, RW, R, HEADS, QD,
                 CQ: tl.constexpr, CV: tl.constexpr,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                 BLOCK_DQ: tl.constexpr, BLOCK_DV: tl.constexpr, PREC: tl.constexpr,
                 ACC: tl.constexpr):
    """dK, dV of one key tile over one work item: a run of at most ``chunk`` of the
    query regions that routed to its region (``ITEMS`` rows: key region n*R + kr or
    -1, first entry in ROUTED_BY, count, workspace slot or -1). A region that many
    regions route to is split over several items, so that no program runs much longer
    than the others; their partial sums go to ``WS`` and ``_bra_bwd_dkv_reduce`` adds
    them in item order. Others write to DQKV directly."""
    item = tl.program_id(0) // HEADS
    hd = tl.program_id(0) % HEADS
    pid_n = tl.program_id(1)
    key = tl.load(ITEMS + item * 4)
    first = tl.load(ITEMS + item * 4 + 1)
    count = tl.load(ITEMS + item * 4 + 2)
    slot = tl.load(ITEMS + item * 4 + 3)
    valid = key >= 0
    key = tl.maximum(key, 0)
    n = (key // R).to(tl.int64)
    kr = key % R
    L = RH * RW

    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = (offs_n < L) & valid
    offs_dq = tl.arange(0, BLOCK_DQ)
    offs_dv = tl.arange(0, BLOCK_DV)
    mask_dq = offs_dq < CQ
    mask_dv = offs_dv < CV
    qkv = QKV + n * s_n
    ky, kx = _token_rc(kr, offs_n, S, RH, RW)
    kv_off = ky[:, None] * s_h + kx[:, None] * s_w
    k = tl.load(qkv + kv_off + QD + hd * CQ + offs_dq[None, :],
                mask=mask_n[:, None] & mask_dq[None, :], other=0.)
    v = tl.load(qkv + kv_off + 2 * QD + hd * CV + offs_dv[None, :],
                mask=mask_n[:, None] & mask_dv[None, :], other=0.)
    dk = tl.zeros([BLOCK_N, BLOCK_DQ], ACC)
    dv = tl.zeros([BLOCK_N, BLOCK_DV], ACC)

    # Query regions ROUTED_BY[first:first + count], ascending: one fixed order.
    n_queries = count * L
    for start in range(0, n_queries, BLOCK_M):
        offs_m = start + tl.arange(0, BLOCK_M)
        mask_m = offs_m < n_queries
        region = tl.load(ROUTED_BY + first + offs_m // L, mask=mask_m, other=0)
        tok = offs_m % L
        qy, qx = _token_rc(region, tok, S, RH, RW)
        q = tl.load(qkv + qy[:, None] * s_h + qx[:, None] * s_w + hd * CQ + offs_dq[None, :],
                    mask=mask_m[:, None] & mask_dq[None, :], other=0.)
        do = tl.load(DOUT + n * so_n + qy[:, None] * so_h + qx[:, None] * so_w + hd * CV
                     + offs_dv[None, :], mask=mask_m[:, None] & mask_dv[None, :], other=0.)
        stats = ((n * R + region) * HEADS + hd) * L + tok
        lse = tl.load(LSE + stats, mask=mask_m, other=0.)
        delta = tl.load(DELTA + stats, mask=mask_m, other=0.)
        s_t = tl.dot(k, tl.trans(q), input_precision=PREC, out_dtype=ACC) * qk_scale
        p_t = tl.where(mask_m[None, :], tl.exp2(s_t - lse[None, :]), 0.)
        dv += tl.dot(p_t.to(do.dtype), do, input_precision=PREC, out_dtype=ACC)
        dp_t = tl.dot(v, tl.trans(do), input_precision=PREC, out_dtype=ACC)
        ds_t = p_t * (dp_t - delta[None, :])
        dk += tl.dot(ds_t.to(q.dtype), q, input_precision=PREC, out_dtype=ACC)

    dk = dk * scale
    if slot < 0:
        out = DQKV + n * s_n + kv_off
        tl.store(out + QD + hd * CQ + offs_dq[None, :], dk.to(DQKV.dtype.element_ty),
                 mask=mask_n[:, None] & mask_dq[None, :])
        tl.store(out + 2 * QD + hd * CV + offs_dv[None, :], dv.to(DQKV.dtype.element_ty),
                 mask=mask_n[:, None] & mask_dv[None, :])
    else:
        ws = WS + slot.to(tl.int64) * ws_s + offs_n[:, None] * (QD + HEADS * CV)
        tl.store(ws + hd * CQ + offs_dq[None, :], dk, mask=mask_n[:, None] & mask_dq[None, :])
        tl.store(ws + QD + hd * CV + offs_dv[None, :], dv,
                 mask=mask_n[:, None] & mask_dv[None, :])


@triton.jit
def _bra_bwd_dkv_reduce(WS, SLOT_FIRST, N_ITEMS, DQKV, s_n, s_h, s_w, ws_s,
                        S, RH, RW, R, QD, C,
                        BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr):
    """dK | dV of key regions split over several items: their partial sums (``WS``
    slots SLOT_FIRST[key] ...) added in item order, written to DQKV."""
    key = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_c = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
    first = tl.load(SLOT_FIRST + key)
    n_items = tl.where(first >= 0, tl.load(N_ITEMS + key), 0)
    L = RH * RW
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = ((offs_n < L) & (first >= 0))[:, None] & (offs_c < C)[None, :]
    acc = tl.zeros([BLOCK_N, BLOCK_C], WS.dtype.element_ty)
    ws = WS + offs_n[:, None] * C + offs_c[None, :]
    for i in range(0, n_items):
        acc += tl.load(ws + (first + i).to(tl.int64) * ws_s, mask=mask, other=0.)
    n = (key // R).to(tl.int64)
    ky, kx = _token_rc(key % R, offs_n, S, RH, RW)
    out = DQKV + n * s_n + ky[:, None] * s_h + kx[:, None] * s_w + QD + offs_c[None, :]
    tl.store(out, acc.to(DQKV.dtype.element_ty), mask=mask)
