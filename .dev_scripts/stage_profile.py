"""Where a BiFormer-S classifier training step spends its GPU time, stage by stage.

    python .dev_scripts/stage_profile.py [--impl sdpa|triton] [--bra-cfg JSON] [--no-full]

Each stage's blocks alone (batch 128 at 224: its input shape), forward and backward
under bf16 autocast: CUDA-event time per step and the kernels of three profiled steps,
most time first (an event time well above the kernel sum means the host is the bound);
for stages 2 and 3 also the ops grouped by input shape; then the whole training step
(AdamW). docs/benchmark.md, run 5, was read from this.
"""
import time, collections, argparse
import torch, torch.nn.functional as F
from torch.profiler import profile, ProfilerActivity, DeviceType
from mmbiformer.models import BiFormer

p = argparse.ArgumentParser()
p.add_argument('--impl', default='sdpa')
p.add_argument('--rows', type=int, default=14)
p.add_argument('--bra-cfg', default='{}')
p.add_argument('--no-full', action='store_true')
args = p.parse_args()
dev = torch.device('cuda')
torch.backends.cudnn.benchmark = True
bb = BiFormer('small', n_win=7, out_indices=(3,), out_norm='batchnorm', attn_impl=args.impl,
              dwconv_impl='cudnn', bra_cfg=__import__('json').loads(args.bra_cfg)).to(dev).train()
N = 128
shapes = [(N, 56, 56, 64), (N, 28, 28, 128), (N, 14, 14, 256), (N, 7, 7, 512)]

def ev_time(fn, iters=10, warm=3):
    for _ in range(warm): fn()
    torch.cuda.synchronize()
    s, e = torch.cuda.Event(True), torch.cuda.Event(True)
    s.record()
    for _ in range(iters): fn()
    e.record(); torch.cuda.synchronize()
    return s.elapsed_time(e) / iters

def kernels(fn, steps=3):
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=True) as prof:
        for _ in range(steps): fn()
        torch.cuda.synchronize()
    agg = collections.defaultdict(lambda: [0.0, 0])
    tot = 0.0
    for e in prof.events():
        if e.device_type == DeviceType.CUDA:
            agg[e.name][0] += e.device_time_total / steps
            agg[e.name][1] += 1
            tot += e.device_time_total / steps
    return tot, sorted(agg.items(), key=lambda kv: -kv[1][0]), prof

def show(title, fn):
    ms = ev_time(fn)
    tot, rows, prof = kernels(fn)
    print(f'\n=== {title}: {ms:.2f} ms/step (event), kernel sum {tot/1000:.2f} ms')
    for name, (us, n) in rows[:args.rows]:
        print(f'{us:9.1f} us {100*us/tot:5.1f}% {n//3:5d}x  {name[:110]}')
    return prof

for i, shp in enumerate(shapes):
    stage = bb.stages[i]
    x = torch.randn(*shp, device=dev, dtype=torch.bfloat16, requires_grad=True)
    g = torch.randn(*shp, device=dev, dtype=torch.bfloat16)
    def step():
        with torch.autocast('cuda', dtype=torch.bfloat16):
            out = stage(x)
        out.backward(g)
    prof = show(f'stage {i+1} {shp} x{len(stage)} blocks', step)
    if i in (1, 2):
        print(prof.key_averages(group_by_input_shape=True).table(
            sort_by='self_cuda_time_total', row_limit=25, max_name_column_width=40,
            max_shapes_column_width=70))

# whole classifier step, as the benchmark
head = torch.nn.Linear(512, 1000).to(dev)
opt = torch.optim.AdamW(list(bb.parameters()) + list(head.parameters()), lr=1e-4)
x = torch.randn(N, 3, 224, 224, device=dev)
y = torch.randint(0, 1000, (N,), device=dev)
def train_step():
    opt.zero_grad(set_to_none=True)
    with torch.autocast('cuda', dtype=torch.bfloat16):
        lo = head(bb(x)[-1].flatten(2).mean(-1))
    F.cross_entropy(lo.float(), y).backward()
    opt.step()
if not args.no_full: show('full train step', train_step)
