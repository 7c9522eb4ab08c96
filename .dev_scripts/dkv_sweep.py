"""The routed attention backward's GPU time (summed kernel durations, fp16) at BiFormer-S's
det stages 1-3 and cls stages 1-2, under launch settings of ``_bra_bwd_dkv`` (its query
tile BLOCK_M, warps, pipeline stages) laid over the shipped ones (``{}``: as shipped,
``DKV_QUERY_TILES`` in ops/backends/triton/routed_attention.py). docs/benchmark.md,
run 18.

    PYTHONPATH=. python3 .dev_scripts/dkv_sweep.py   # writes dkv.json to $OUT or .
"""
import itertools
import json
import os

import torch

from mmbiformer.benchmarking import kernels
from mmbiformer.ops.backends.triton import kernels as triton_kernels
from mmbiformer.ops.backends.triton.routed_attention import routed_attention

SHIPPED = triton_kernels._bra_bwd_dkv
SETTINGS = [{}] + [dict(BLOCK_M=m, num_warps=w, num_stages=s)
                   for m, w, s in itertools.product((64, 128), (4, 8), (2, 3, 4))]


class Overridden:
    """``_bra_bwd_dkv`` launched with ``over`` in place of the caller's settings."""

    def __init__(self, over):
        self.over = over

    def __getitem__(self, grid):
        launch = SHIPPED[grid]
        return lambda *args, **kw: launch(*args, **{**kw, **self.over})


def main():
    results = []
    for st in kernels.stages('det') + kernels.stages('cls')[:2]:
        heads, R = st.C // kernels.HEAD_DIM, st.n_win ** 2
        qkv = torch.randn(st.N, st.H, st.W, 3 * st.C, device='cuda', dtype=torch.float16,
                          requires_grad=True)
        index = torch.stack([torch.randperm(R, device='cuda')[:st.topk]
                             for _ in range(st.N * R)]).view(st.N, R, st.topk)
        out = routed_attention(qkv, index, st.n_win, heads, st.C, kernels.HEAD_DIM ** -0.5)
        grad = torch.randn_like(out)
        for over in SETTINGS:
            triton_kernels._bra_bwd_dkv = Overridden(over)
            try:
                us = kernels._us(lambda: torch.autograd.grad(out, qkv, grad, retain_graph=True),
                                 10, 'cuda')
            finally:
                triton_kernels._bra_bwd_dkv = SHIPPED
            results.append(dict(stage=st.name, over=over, us=us))
            print(st.name, over, f'{us:.1f} us', flush=True)
    with open(os.path.join(os.environ.get('OUT', '.'), 'dkv.json'), 'w') as f:
        json.dump(results, f, indent=1)


if __name__ == '__main__':
    main()
