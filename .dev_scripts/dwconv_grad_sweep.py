"""Run 7: launch settings of the depthwise-conv weight-gradient kernel at BiFormer-S's
LCE shapes (stages 1-3, batch 128 at 224), weighted by blocks per stage; prints the best.

    PYTHONPATH=. python3 .dev_scripts/dwconv_grad_sweep.py
"""
import itertools

import torch
from mmbiformer.ops.backends.triton import dwconv
from mmbiformer.benchmarking.timing import mean_ms


def t(fn):  # microseconds
    return mean_ms(fn, 20, device='cuda') * 1000
shapes = [(4, 128, 56, 56, 64, 5, 192), (4, 128, 28, 28, 128, 5, 384), (18, 128, 14, 14, 256, 5, 768)]
data = []
for reps, N, H, W, C, k, width in shapes:
    x = torch.randn(N, H, W, width, device='cuda', dtype=torch.bfloat16)[..., 2 * (width // 3):]
    g = torch.randn(N, H, W, C, device='cuda', dtype=torch.bfloat16)
    data.append((reps, x, g, k))
ref = [dwconv.weight_grad(x, g, k) for _, x, g, k in data]
results = []
for (th, tw), bc, nw, ps in itertools.product([(8, 8), (4, 8), (4, 16), (2, 16)], [32, 64], [1, 2, 4], [4, 8]):
    cfg = dict(TH=th, TW=tw, BLOCK_C=bc, num_warps=nw, progs_per_sm=ps)
    try:
        per = [t(lambda: dwconv.weight_grad(x, g, k, cfg)) for _, x, g, k in data]
        err = max(((dwconv.weight_grad(x, g, k, cfg)[0] - r[0]).norm() / r[0].norm()).item() for (_, x, g, k), r in zip(data, ref))
    except Exception as ex:
        print(cfg, 'failed', str(ex)[:80]); continue
    total = sum(p * d[0] for p, d in zip(per, data))
    results.append((total, cfg))
    print(f'{cfg}: ' + ' '.join(f'{p:6.1f}' for p in per) + f' us; weighted {total/1000:.2f} ms/step, err {err:.1e}', flush=True)
results.sort(key=lambda r: r[0])
print('default', dwconv.DW_CONFIG, 'best', results[0])

