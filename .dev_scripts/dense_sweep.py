"""Run 7: the dense BRA kernels (routing as a bit mask over all tokens) at stage 3 of a
224 input (128x14x14, 8 heads of 32, top 16 of 49 regions) for 27 tile settings (some
do not compile), beside sdpa's masked dense attention and the 5x5 LCE in Triton and
cuDNN (us per call).

    PYTHONPATH=. python3 .dev_scripts/dense_sweep.py
"""
import itertools

import torch
from mmbiformer.ops.backends.triton import routed_attention as ra
from mmbiformer.ops.backends.triton.dwconv import conv_nhwc_into, weight_grad
from mmbiformer.ops.backends.sdpa import _masked_dense_attention
dev = 'cuda'
from mmbiformer.benchmarking.timing import mean_ms


def t(fn):  # microseconds
    return mean_ms(fn, 30, device='cuda') * 1000
N, H, W, C, m, S, topk = 128, 14, 14, 256, 8, 7, 16
torch.manual_seed(0)
qkv = torch.randn(N, H, W, 3 * C, device=dev, dtype=torch.bfloat16)
index = torch.stack([torch.randperm(S * S, device=dev)[:topk] for _ in range(N * S * S)]).view(N, S * S, topk)
g = torch.randn(N, H, W, C, device=dev, dtype=torch.bfloat16)
scale = 32 ** -0.5
out, _, lse = ra.routed_attn_fwd(qkv, index, None, None, S, m, C, scale)
print('fwd lse', lse.shape)
rows = []
for (bm, bn, w), st in itertools.product([(64, 64, 4), (32, 32, 2), (32, 32, 4), (32, 64, 4), (64, 32, 4), (128, 64, 8), (128, 32, 8), (64, 64, 8), (16, 64, 2)], [1, 2, 3]):
    ra.DENSE_BLOCKS = dict(BLOCK_M=bm, BLOCK_N=bn, num_warps=w, num_stages=st)
    try:
        f = t(lambda: ra.routed_attn_fwd(qkv, index, None, None, S, m, C, scale))
        o, _, l = ra.routed_attn_fwd(qkv, index, None, None, S, m, C, scale)
        b = t(lambda: ra.routed_attn_bwd(g, qkv, index, o, l, None, S, m, C, scale))
        err = ((o.float() - out.float()).norm() / out.float().norm()).item()
        rows.append((f + b, f, b, bm, bn, w, st, err))
        print(f'BM {bm:3d} BN {bn:3d} warps {w} stages {st}: fwd {f:7.1f} us bwd {b:7.1f} us (err vs first {err:.1e})', flush=True)
    except Exception as ex:
        print(bm, bn, w, st, 'failed', str(ex)[:100])
rows.sort()
print('best', rows[:3])
# sdpa masked dense on region layout, fwd+bwd
from mmbiformer.ops.regions import to_regions
reg = to_regions(qkv, S)
q = reg[..., :C].detach().clone().requires_grad_(); kv = reg[..., C:].detach().clone().requires_grad_()
gr = to_regions(g, S)
def sd():
    o = _masked_dense_attention(q, kv, index, m, scale); o.backward(gr)
print(f'sdpa masked dense fwd+bwd {t(sd):.1f} us')
# LCE 5x5 at stage 3: triton vs cudnn
v = qkv[..., 2 * C:]
wgt = torch.randn(C, 1, 5, 5, device=dev, dtype=torch.bfloat16); bias = torch.randn(C, device=dev, dtype=torch.bfloat16)
res = torch.empty(N, H, W, C, device=dev, dtype=torch.bfloat16)
tf = t(lambda: conv_nhwc_into(torch.empty_like(res), v, wgt, bias, residual=res))
tb = t(lambda: conv_nhwc_into(res, g, wgt, residual=res, flip=True))
tw = t(lambda: weight_grad(v, g, 5))
print(f'triton LCE stage 3: fwd {tf:.1f} bwd-input {tb:.1f} wgrad {tw:.1f} us')
conv = torch.nn.Conv2d(C, C, 5, padding=2, groups=C).to(dev).to(memory_format=torch.channels_last)
torch.backends.cudnn.benchmark = True
vc = v.permute(0, 3, 1, 2).detach().requires_grad_()
def cd():
    with torch.autocast('cuda', dtype=torch.bfloat16):
        o = conv(vc)
    o.backward(g.permute(0, 3, 1, 2))
print(f'cudnn LCE stage 3 fwd+bwd {t(cd):.1f} us')
