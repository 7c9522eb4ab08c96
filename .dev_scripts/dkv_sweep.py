"""GPU time (summed kernel durations, fp16) of the routed attention at BiFormer-S's det
stages 1-3 and cls stages 1-2, under launch settings of one routed kernel laid over the
shipped ones (``{}``: as shipped). The settings varied are those that leave the kernel's
grid alone:

* ``dkv`` (default): ``_bra_bwd_dkv``'s query tile BLOCK_M, warps, stages; timed: the
  whole backward (``DKV_QUERY_TILES`` in ops/backends/triton/routed_attention.py);
* ``dq``: ``_bra_bwd_dq``'s key tile BLOCK_N, warps, stages; timed: the whole backward;
* ``fwd``: ``_bra_fwd``'s key tile BLOCK_N, warps, stages; timed: the forward.

docs/benchmark.md, run 18 (``dkv``).

    PYTHONPATH=. python3 .dev_scripts/dkv_sweep.py [dkv|dq|fwd]   # writes <kernel>.json to $OUT or .
"""
import itertools
import json
import os
import sys

import torch

from mmbiformer.benchmarking import kernels
from mmbiformer.ops.backends.triton import kernels as triton_kernels
from mmbiformer.ops.backends.triton.routed_attention import routed_attention

KERNELS = {'dkv': ('_bra_bwd_dkv', 'BLOCK_M', (64, 128, 256)),
           'dq': ('_bra_bwd_dq', 'BLOCK_N', (32, 64, 128)),
           'fwd': ('_bra_fwd', 'BLOCK_N', (32, 64, 128))}


class Overridden:
    """A kernel launched with ``over`` in place of the caller's settings."""

    def __init__(self, kernel, over):
        self.kernel, self.over = kernel, over

    def __getitem__(self, grid):
        launch = self.kernel[grid]
        return lambda *args, **kw: launch(*args, **{**kw, **self.over})


def main(which: str = 'dkv'):
    name, tile, sizes = KERNELS[which]
    shipped = getattr(triton_kernels, name)
    settings = [{}] + [{tile: t, 'num_warps': w, 'num_stages': s}
                       for t, w, s in itertools.product(sizes, (4, 8), (2, 3, 4))]
    results = []
    for st in kernels.stages('det') + kernels.stages('cls')[:2]:
        heads, R = st.C // kernels.HEAD_DIM, st.n_win ** 2
        qkv = torch.randn(st.N, st.H, st.W, 3 * st.C, device='cuda', dtype=torch.float16,
                          requires_grad=True)
        index = torch.stack([torch.randperm(R, device='cuda')[:st.topk]
                             for _ in range(st.N * R)]).view(st.N, R, st.topk)
        args = (qkv, index, st.n_win, heads, st.C, kernels.HEAD_DIM ** -0.5)
        out = routed_attention(*args)
        grad = torch.randn_like(out)

        def forward():
            with torch.no_grad():
                routed_attention(*args)

        def backward():
            torch.autograd.grad(out, qkv, grad, retain_graph=True)

        for over in settings:
            setattr(triton_kernels, name, Overridden(shipped, over))
            try:
                us = kernels._us(forward if which == 'fwd' else backward, 10, 'cuda')
            except Exception as e:  # noqa: BLE001 (a setting that does not compile)
                us = None
                print(st.name, over, 'failed:', str(e)[:200], flush=True)
            finally:
                setattr(triton_kernels, name, shipped)
            results.append(dict(stage=st.name, over=over, us=us))
            if us is not None:
                print(st.name, over, f'{us:.1f} us', flush=True)
    with open(os.path.join(os.environ.get('OUT', '.'), f'{which}.json'), 'w') as f:
        json.dump(results, f, indent=1)


if __name__ == '__main__':
    main(*sys.argv[1:])
