"""Triton kernel of the routing's bookkeeping for the routed backward: one launch per
block where PyTorch ops took ~50 (a sort, searches, scans, gathers; a few microseconds
each inside a captured step, more than the routed kernels' own time at small maps).

``_inverse_routing``, one program per image: from the routing ``index`` (R regions,
``TOPK`` routed regions each) it writes

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
        # routed[k, r]: query region r routed to key region k.
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
