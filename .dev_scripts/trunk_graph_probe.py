"""Issue 29, step 1: what the dense trunk (BiFormer-S, n_win 16, 2x3x800x1216, bf16)
costs eager against its forward and backward replayed as CUDA graphs
(``torch.cuda.make_graphed_callables``, captured inside ``captured_step()``), per
``dwconv_impl``; the capture's wall time and memory; and the kernels of one step.

    PYTHONPATH=. python3 .dev_scripts/trunk_graph_probe.py [H W] [--profile]
"""
import collections
import sys
import time

import torch
from torch.profiler import DeviceType

from cuda_timing import cuda_profile  # this folder

from mmbiformer.models import BiFormer
from mmbiformer.ops.backends import captured_step

dev = torch.device('cuda')
args = [a for a in sys.argv[1:] if not a.startswith('--')]
H, W = (int(args[0]), int(args[1])) if args else (800, 1216)
x = torch.randn(2, 3, H, W, device=dev)
GIB = 2**30


def build(dwconv):
    torch.manual_seed(0)
    m = BiFormer('small', n_win=16, out_indices=(0, 1, 2, 3), drop_path_rate=0.2,
                 norm_eval=True, dwconv_impl=dwconv).to(dev).train()
    return m


def loss_of(outs):
    return sum(o.float().mean() for o in outs)


def timed(fn, iters=20, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / iters * 1000


def eager(dwconv, inside=False):
    m = build(dwconv)

    def step():
        m.zero_grad(set_to_none=True)
        with torch.autocast('cuda', dtype=torch.bfloat16):
            outs = m(x)
        loss_of(outs).backward()
    torch.cuda.reset_peak_memory_stats()
    if inside:
        with captured_step():
            ms = timed(step)
    else:
        ms = timed(step)
    return ms, torch.cuda.max_memory_allocated() / GIB


def graphed(dwconv, warm=3, shapes=((800, 1216),)):
    m = build(dwconv)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    pool = torch.cuda.graph_pool_handle()
    fns, caps = {}, []
    for (h, w) in shapes:
        xs = torch.randn(2, 3, h, w, device=dev)
        t0 = time.perf_counter()
        with captured_step(), torch.autocast('cuda', dtype=torch.bfloat16, cache_enabled=False):
            g = torch.cuda.make_graphed_callables(m, (xs,), num_warmup_iters=warm, pool=pool)
        torch.cuda.synchronize()
        caps.append((time.perf_counter() - t0) * 1000)
        fns[(h, w)] = (g.forward, xs)
        # make_graphed_callables replaces m.forward: restore for the next shape
        del m.forward
    res = {}
    torch.cuda.reset_peak_memory_stats()
    for (h, w), (f, xs) in fns.items():
        def step():
            m.zero_grad(set_to_none=True)
            loss_of(f(xs)).backward()
        res[(h, w)] = timed(step)
    return res, caps, (torch.cuda.memory_allocated() - base) / GIB, \
        torch.cuda.max_memory_allocated() / GIB


print(f'trunk BiFormer-S n_win 16, 2x3x{H}x{W}, bf16, {torch.cuda.get_device_name()}')
for dw in ('native', 'cudnn', 'triton'):
    ms, mem = eager(dw)
    print(f'eager            dwconv {dw:<7}: {ms:7.1f} ms  peak {mem:.2f} GiB', flush=True)
for dw in ('native', 'triton'):
    ms, mem = eager(dw, inside=True)
    print(f'eager captured-kernels dwconv {dw:<7}: {ms:7.1f} ms  peak {mem:.2f} GiB', flush=True)
for dw in ('native', 'cudnn', 'triton'):
    for warm in (1, 3):
        try:
            res, caps, held, peak = graphed(dw, warm)
        except Exception as e:  # noqa
            print(f'graphed dwconv {dw} warm {warm}: FAILED {type(e).__name__}: {e}'[:400])
            continue
        ms = list(res.values())[0]
        print(f'graphed          dwconv {dw:<7} warm {warm}: {ms:7.1f} ms  capture '
              f'{caps[0]:.0f} ms  held {held:.2f} GiB  peak {peak:.2f} GiB', flush=True)
# Several shapes sharing one pool: memory and capture time per extra shape.
shapes = ((800, 1216), (800, 1344), (800, 1088), (1088, 800), (832, 1216))
try:
    res, caps, held, peak = graphed('triton', 1, shapes)
    print('shared pool, 5 shapes, triton dwconv, warm 1: ' + ', '.join(
        f'{h}x{w} {ms:.1f} ms (capture {c:.0f} ms)' for ((h, w), ms), c in zip(res.items(), caps))
        + f'; held {held:.2f} GiB, peak {peak:.2f} GiB')
except Exception as e:  # noqa
    print(f'shared pool: FAILED {type(e).__name__}: {e}'[:400])

if '--profile' in sys.argv:
    m = build('triton')

    def step():
        m.zero_grad(set_to_none=True)
        with torch.autocast('cuda', dtype=torch.bfloat16):
            outs = m(x)
        loss_of(outs).backward()
    with captured_step():
        prof = cuda_profile(step, 3)
    agg = collections.defaultdict(lambda: [0.0, 0])
    tot = 0
    for e in prof.events():
        if e.device_type == DeviceType.CUDA:
            agg[e.name][0] += e.device_time_total / 3
            agg[e.name][1] += 1
            tot += e.device_time_total / 3
    print(f'kernel sum per trunk step (captured-step kernels, triton dwconv) {tot/1000:.2f} ms')
    for name, (us, n) in sorted(agg.items(), key=lambda kv: -kv[1][0])[:30]:
        print(f'{us:9.1f} us {100*us/tot:5.1f}% {n//3:5d}x  {name[:110]}')
