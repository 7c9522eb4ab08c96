"""Run 7: bias-gradient sums of BiFormer-S's linear layers: autograd's reduction
(g.sum(0)) against a matrix-vector product with ones and a Triton column sum (us).

    PYTHONPATH=. python3 .dev_scripts/bias_grad_probe.py
"""
import functools

import torch, triton, triton.language as tl
dev = 'cuda'
from cuda_timing import cuda_us  # .dev_scripts/cuda_timing.py
t = functools.partial(cuda_us, iters=50)

@triton.jit
def colsum(G, P, M, C, BM: tl.constexpr, BC: tl.constexpr, ITERS: tl.constexpr):
    pid = tl.program_id(0); pc = tl.program_id(1)
    offs_c = pc * BC + tl.arange(0, BC)
    acc = tl.zeros([BC], tl.float32)
    for i in range(ITERS):
        offs_m = (pid * ITERS + i) * BM + tl.arange(0, BM)
        g = tl.load(G + offs_m[:, None].to(tl.int64) * C + offs_c[None, :], mask=(offs_m < M)[:, None] & (offs_c < C)[None, :], other=0.)
        acc += tl.sum(g.to(tl.float32), 0)
    tl.store(P + pid * C + offs_c, acc, mask=offs_c < C)

def tri(g, BM=64, ITERS=8):
    M, C = g.shape
    BC = min(128, triton.next_power_of_2(C))
    nb = triton.cdiv(M, BM * ITERS)
    p = torch.empty(nb, C, device=g.device, dtype=torch.float32)
    colsum[(nb, triton.cdiv(C, BC))](g, p, M, C, BM=BM, BC=BC, ITERS=ITERS)
    return p.sum(0)

tot = {'sum0': 0, 'mv': 0, 'triton': 0}
for M, Cs, blocks in [(401408, (192, 64, 192, 64), 4), (100352, (384, 128, 384, 128), 4),
                      (25088, (768, 256, 768, 256), 18), (6272, (1536, 512, 1536, 512), 4)]:
    for C in Cs:
        g = torch.randn(M, C, device=dev, dtype=torch.bfloat16)
        ones = torch.ones(M, device=dev, dtype=torch.bfloat16)
        ref = g.float().sum(0)
        a = t(lambda: g.sum(0)); b = t(lambda: torch.mv(g.t(), ones)); c = t(lambda: tri(g))
        err = ((tri(g) - ref).norm() / ref.norm()).item()
        gb = M * C * 2 / 1e9
        print(f'M={M:7d} C={C:5d}  sum(0) {a:7.1f} us ({gb/a*1e6/1e3:5.2f} TB/s)  mv {b:7.1f} us  triton {c:7.1f} us (err {err:.1e})')
        tot['sum0'] += a * blocks; tot['mv'] += b * blocks; tot['triton'] += c * blocks
print({k: round(v / 1000, 2) for k, v in tot.items()}, 'ms per step over all blocks (fwd linear bias grads)')
# What autograd runs for a linear's backward under autocast
lin = torch.nn.Linear(64, 192).to(dev); xx = torch.randn(128, 56, 56, 64, device=dev, requires_grad=True)
from torch.profiler import profile, ProfilerActivity
def lb():
    with torch.autocast('cuda', dtype=torch.bfloat16):
        o = lin(xx)
    o.backward(torch.ones_like(o))
for _ in range(3): lb()
with profile(activities=[ProfilerActivity.CUDA]) as prof:
    lb(); torch.cuda.synchronize()
print(prof.key_averages().table(sort_by='cuda_time_total', row_limit=12, max_name_column_width=90))
