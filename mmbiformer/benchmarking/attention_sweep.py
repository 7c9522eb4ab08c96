"""GPU time (summed kernel durations, from the profiler) of BRA's token attention at
BiFormer-S's shapes, under launch settings of one kernel laid over the shipped ones
(``{}``: as shipped).

Routed kernels (det stages 1-3, cls stages 1-2, fp16). The settings varied leave the
kernel's grid alone:

* ``dkv``: ``_bra_bwd_dkv``'s query tile BLOCK_M, warps, stages; timed: the whole
  backward (``DKV_QUERY_TILES`` in ops/backends/triton/routed_attention.py);
* ``dq``: ``_bra_bwd_dq``'s key tile BLOCK_N, warps, stages; timed: the whole backward;
* ``fwd``: ``_bra_fwd``'s key tile BLOCK_N, warps, stages; timed: the forward.

Dense kernels (cls stage 3, 128x14x14x256, bf16 as the cls step runs them): every entry
of ``DENSE_TILES[kernel]`` (query and key tiles, warps, stages):

* ``dense_fwd``: timed: the forward; ``dense_dq``, ``dense_dkv``: the whole backward.

The sweeps of docs/benchmark_history.md, runs 18-19.

    python3 tools/benchmark.py kernels --sweep --parts attention \
        --attention-kernels dq fwd dense_fwd
"""
import itertools
from typing import Dict, List

import torch

from . import kernels

ROUTED = {'dkv': ('_bra_bwd_dkv', 'BLOCK_M', (64, 128, 256)),
          'dq': ('_bra_bwd_dq', 'BLOCK_N', (32, 64, 128)),
          'fwd': ('_bra_fwd', 'BLOCK_N', (32, 64, 128))}
DENSE = {'dense_fwd': 'fwd', 'dense_dq': 'dq', 'dense_dkv': 'dkv'}


class Overridden:
    """A kernel launched with ``over`` in place of the caller's settings."""

    def __init__(self, kernel, over):
        self.kernel, self.over = kernel, over

    def __getitem__(self, grid):
        launch = self.kernel[grid]
        return lambda *args, **kw: launch(*args, **{**kw, **self.over})


def _inputs(st, dtype):
    from ..ops.backends.triton import routed_attention as ra
    heads, R = st.C // kernels.HEAD_DIM, st.n_win ** 2
    qkv = torch.randn(st.N, st.H, st.W, 3 * st.C, device='cuda', dtype=dtype,
                      requires_grad=True)
    index = torch.stack([torch.randperm(R, device='cuda')[:st.topk]
                         for _ in range(st.N * R)]).view(st.N, R, st.topk)
    args = (qkv, index, st.n_win, heads, st.C, kernels.HEAD_DIM ** -0.5)
    out = ra.routed_attention(*args)
    grad = torch.randn_like(out)

    def forward():
        with torch.no_grad():
            return ra.routed_attention(*args)

    def backward():
        return torch.autograd.grad(out, qkv, grad, retain_graph=True)[0]

    return forward, backward


def _time(st, over, fn, reference, results, apply, restore):
    apply()
    try:
        us = kernels._us(fn, 10, 'cuda')
        err = ((fn().float() - reference).norm() / reference.norm()).item()
    except Exception as e:  # noqa: BLE001 (a setting that does not compile)
        us = err = None
        print(st.name, over, 'failed:', str(e)[:200], flush=True)
    finally:
        restore()
    results.append(dict(stage=st.name, over=over, us=us, rel_err=err))
    if us is not None:
        print(st.name, over, f'{us:.1f} us (rel. err. against shipped {err:.1e})', flush=True)


def sweep_routed(which: str) -> List[Dict]:
    from ..ops.backends.triton import kernels as triton_kernels
    name, tile, sizes = ROUTED[which]
    shipped = getattr(triton_kernels, name)
    settings = [{}] + [{tile: t, 'num_warps': w, 'num_stages': s}
                       for t, w, s in itertools.product(sizes, (2, 4), (2, 3, 4))]
    results = []
    for st in kernels.stages('det') + kernels.stages('cls')[:2]:
        forward, backward = _inputs(st, torch.float16)
        fn = forward if which == 'fwd' else backward
        reference = fn().float()
        for over in settings:
            _time(st, over, fn, reference, results,
                  lambda: setattr(triton_kernels, name, Overridden(shipped, over)),
                  lambda: setattr(triton_kernels, name, shipped))
    return results


def dense_settings(kernel):
    """Tiles where the program's own tile is 32-128 rows and the walked one 32-256."""
    own, walked = ('BLOCK_N', 'BLOCK_M') if kernel == 'dkv' else ('BLOCK_M', 'BLOCK_N')
    out = []
    for a, b, s in itertools.product((32, 64, 128), (32, 64, 128, 256), (1, 2, 3)):
        for w in ((2, 4) if a * b <= 4096 else (4, 8)):
            out.append({own: a, walked: b, 'num_warps': w, 'num_stages': s})
    return out


def sweep_dense(which: str) -> List[Dict]:
    from ..ops.backends.triton import routed_attention as ra
    kernel = DENSE[which]
    st = kernels.stages('cls')[2]
    forward, backward = _inputs(st, torch.bfloat16)
    fn = forward if kernel == 'fwd' else backward
    reference = fn().float()
    shipped = dict(ra.DENSE_TILES[kernel])
    results = []
    for over in [{}] + dense_settings(kernel):
        _time(st, over, fn, reference, results,
              lambda: ra.DENSE_TILES[kernel].update(over),
              lambda: ra.DENSE_TILES.__setitem__(kernel, dict(shipped)))
    return results


def sweep_attention(which=('dkv', )) -> Dict[str, List[Dict]]:
    """``{kernel: rows}`` for each of ``which`` (:data:`ROUTED` and :data:`DENSE` keys)."""
    return {w: (sweep_dense if w in DENSE else sweep_routed)(w) for w in which}
