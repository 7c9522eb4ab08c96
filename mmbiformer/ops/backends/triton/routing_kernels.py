"""Triton kernels of BRA's region routing: one launch each where PyTorch ops took
several, or took a few times their floor (inside a captured step a small kernel costs a
few microseconds however little it does).

* ``_region_means``: the mean query and key of each region, read in place from the NHWC
  projection (a strided mean over the region's rows and columns in PyTorch); sums in
  float32 (float64 for float64 inputs), the mean rounded to the projection's dtype as
  PyTorch's ``mean`` rounds it.
* ``_top_regions``: the indices of each row's ``K`` largest routing logits, largest
  first (PyTorch's ``topk`` takes several times longer on BiFormer's short rows:
  docs/benchmark_history.md, run 19). Among equal logits the lower index comes first;
  NaN ranks above everything, as in ``topk``.
* ``_inverse_routing``: the bookkeeping of the routed backward (below).
* ``_routing_bits``: each query region's routed regions as one int64 bit mask (the
  dense kernels' form of the routing, for maps of at most 64 regions).

``_inverse_routing`` (in place of ~50 PyTorch ops: a sort, searches, scans, gathers),
one program per image: from the routing ``index`` (R regions, ``TOPK`` routed regions
each) it writes

* ``ROUTED_BY``: for each key region ``k``, the query regions that routed to it,
  ascending, back to back (image ``n``'s lists fill entries ``n*R*TOPK`` onward: every
  query region routes to ``TOPK`` distinct regions);
* the work items of ``_bra_bwd_dkv`` (``kernels.py``): each key region's list cut into
  runs of at most ``chunk`` regions, at least one item per key region (a region nobody
  routed to gets zero gradients from an item of count 0). Rows ``(key, first, count,
  slot)``; image ``n``'s are rows ``n * ITEMS_PER_IMG`` onward, the rest of its rows
  ``key = -1``. A key region cut into several items gets consecutive workspace slots
  from ``SLOT_FIRST[key]`` (image ``n``'s from ``n * SLOTS_PER_IMG``), others ``-1``;
  ``N_ITEMS[key]`` is its number of items.

Each image's layout is fixed by its own routing, so no scan runs across images and the
output sizes are bounds known from the shapes (no device synchronisation).
"""
import triton
import triton.language as tl


@triton.jit(do_not_specialize=['S', 'RH', 'RW'])
def _region_means(QKV, OUT, s_n, s_h, s_w, S, RH, RW, C, inv_l,
                  BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr, ACC: tl.constexpr):
    """Grid: (image x region, channel blocks). OUT (N, S*S, C) contiguous: the mean of
    channels ``0 .. C`` over the region's RH x RW tokens."""
    nr = tl.program_id(0)
    n = (nr // (S * S)).to(tl.int64)
    r = nr % (S * S)
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask_c = offs_c < C
    base = QKV + n * s_n + (r // S) * RH * s_h + (r % S) * RW * s_w
    acc = tl.zeros([BLOCK_T, BLOCK_C], ACC)
    for t0 in range(0, RH * RW, BLOCK_T):
        t = t0 + tl.arange(0, BLOCK_T)
        rows = (t // RW) * s_h + (t % RW) * s_w
        acc += tl.load(base + rows[:, None] + offs_c[None, :],
                       mask=(t < RH * RW)[:, None] & mask_c[None, :], other=0.).to(ACC)
    mean = tl.sum(acc, 0) * inv_l
    tl.store(OUT + nr.to(tl.int64) * C + offs_c, mean.to(OUT.dtype.element_ty), mask=mask_c)


@triton.jit(do_not_specialize=['rows', 'R', 'K'])
def _top_regions(LOGITS, INDEX, rows, R, K,
                 BLOCK_ROWS: tl.constexpr, BLOCK_R: tl.constexpr, ACC: tl.constexpr):
    """Grid: row blocks. LOGITS (rows, R) and INDEX (rows, K) contiguous."""
    offs_m = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    offs_r = tl.arange(0, BLOCK_R)
    mask_m = offs_m < rows
    x = tl.load(LOGITS + offs_m[:, None].to(tl.int64) * R + offs_r[None, :],
                mask=mask_m[:, None] & (offs_r < R)[None, :], other=0.).to(ACC)
    x = tl.where(x != x, float('inf'), x)
    left = (offs_r < R)[None, :] & mask_m[:, None]  # not taken yet
    for i in range(K):
        top = tl.max(tl.where(left, x, -float('inf')), 1)
        at = tl.min(tl.where(left & (x == top[:, None]), offs_r[None, :], BLOCK_R), 1)
        tl.store(INDEX + offs_m.to(tl.int64) * K + i, at.to(tl.int64), mask=mask_m)
        left = left & (offs_r[None, :] != at[:, None])


@triton.jit(do_not_specialize=['R', 'TOPK', 'chunk', 'ITEMS_PER_IMG', 'SLOTS_PER_IMG'])
def _inverse_routing(INDEX, ROUTED_BY, ITEMS, SLOT_FIRST, N_ITEMS,
                     R, TOPK, chunk, ITEMS_PER_IMG, SLOTS_PER_IMG,
                     BLOCK_K: tl.constexpr, BLOCK_R: tl.constexpr,
                     BLOCK_TAIL: tl.constexpr):
    n = tl.program_id(0).to(tl.int64)
    offs_r = tl.arange(0, BLOCK_R)
    mask_r = offs_r < R
    index = INDEX + n * R * TOPK + offs_r * TOPK
    entry0 = n * R * TOPK  # this image's first entry of ROUTED_BY
    item0 = n * ITEMS_PER_IMG
    slot0 = n * SLOTS_PER_IMG
    # Entries, items and split slots of the key regions before this block.
    done_entries = 0
    done_items = 0
    done_slots = 0
    for k0 in range(0, R, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        mask_k = offs_k < R
        # routed[k, r]: query region r routed to key region k. (The image's routing is
        # read again for each block of key regions, from the L1 cache after the first.)
        routed = tl.zeros([BLOCK_K, BLOCK_R], tl.int32)
        for t in range(0, TOPK):
            idx = tl.load(index + t, mask=mask_r, other=-1)
            routed = routed | (idx[None, :] == offs_k[:, None]).to(tl.int32)
        count = tl.sum(routed, 1)
        place = tl.cumsum(routed, 1) - routed  # r's place in k's list
        start = done_entries + tl.cumsum(count, 0) - count  # k's list in the image
        tl.store(ROUTED_BY + entry0 + start[:, None] + place, offs_r[None, :],
                 mask=(routed != 0) & mask_k[:, None])

        n_items = tl.where(mask_k, tl.maximum(1, tl.cdiv(count, chunk)), 0)
        first_item = done_items + tl.cumsum(n_items, 0) - n_items
        split = n_items > 1
        n_slots = tl.where(split, n_items, 0)
        first_slot = done_slots + tl.cumsum(n_slots, 0) - n_slots
        key = n * R + offs_k
        tl.store(SLOT_FIRST + key, tl.where(split, slot0 + first_slot, -1), mask=mask_k)
        tl.store(N_ITEMS + key, n_items, mask=mask_k)
        for j in range(0, tl.max(n_items, 0)):
            rows = ITEMS + (item0 + first_item + j) * 4
            ok = j < n_items
            tl.store(rows, key, mask=ok)
            tl.store(rows + 1, entry0 + start + j * chunk, mask=ok)
            tl.store(rows + 2, tl.minimum(chunk, count - j * chunk), mask=ok)
            tl.store(rows + 3, tl.where(split, slot0 + first_slot + j, -1), mask=ok)

        done_entries += tl.sum(count, 0)
        done_items += tl.sum(n_items, 0)
        done_slots += tl.sum(n_slots, 0)

    # The image's rows past its items: no work.
    for i0 in range(done_items, ITEMS_PER_IMG, BLOCK_TAIL):
        offs = i0 + tl.arange(0, BLOCK_TAIL)
        rows = ITEMS + (item0 + offs) * 4
        ok = offs < ITEMS_PER_IMG
        tl.store(rows, tl.full([BLOCK_TAIL], -1, tl.int32), mask=ok)
        tl.store(rows + 1, tl.zeros([BLOCK_TAIL], tl.int32), mask=ok)
        tl.store(rows + 2, tl.zeros([BLOCK_TAIL], tl.int32), mask=ok)
        tl.store(rows + 3, tl.full([BLOCK_TAIL], -1, tl.int32), mask=ok)


@triton.jit
def _routing_bits(INDEX, BITS, rows, TOPK: tl.constexpr, TOPK_PAD: tl.constexpr,
                  BLOCK_ROWS: tl.constexpr):
    """Grid: blocks of BLOCK_ROWS rows of INDEX (rows, TOPK) int64, region ids below
    64. BITS[row]: bit ``k`` set where the row routes to region ``k`` (the sum of
    distinct powers of two is their OR; bit 63 is the sign bit)."""
    r = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    t = tl.arange(0, TOPK_PAD)
    ok = (r < rows)[:, None] & (t < TOPK)[None, :]
    idx = tl.load(INDEX + r[:, None].to(tl.int64) * TOPK + t[None, :], mask=ok, other=0)
    bits = tl.where(ok, tl.full([BLOCK_ROWS, TOPK_PAD], 1, tl.int64) << idx, 0)
    tl.store(BITS + r, tl.sum(bits, 1), mask=r < rows)
