"""Run 7: the CUDA kernels of the classifier training step as the captured step runs it
(BiFormer-S, batch 128 at 224, bf16, fused AdamW; eager, inside captured_step() so the
same kernels are chosen), most time first, then the ops by input shape.

    PYTHONPATH=. python3 .dev_scripts/step_kernel_profile.py [auto|sdpa|triton]
"""
import collections
import sys
import torch, torch.nn.functional as F
from torch.profiler import profile, ProfilerActivity, DeviceType
from mmbiformer.models import BiFormer
from mmbiformer.ops.backends import captured_step
dev = torch.device('cuda')
torch.backends.cudnn.benchmark = True
impl = sys.argv[1] if len(sys.argv) > 1 else 'auto'
bb = BiFormer('small', n_win=7, out_indices=(3,), out_norm='batchnorm', attn_impl=impl,
              dwconv_impl='cudnn').to(dev).train()
head = torch.nn.Linear(512, 1000).to(dev)
params = list(bb.parameters()) + list(head.parameters())
opt = torch.optim.AdamW(params, lr=1e-4, fused=True)
x = torch.randn(128, 3, 224, 224, device=dev); y = torch.randint(0, 1000, (128,), device=dev)
def step():
    opt.zero_grad(set_to_none=False)
    with torch.autocast('cuda', dtype=torch.bfloat16, cache_enabled=False):
        lo = head(bb(x)[-1].flatten(2).mean(-1))
    F.cross_entropy(lo.float(), y).backward()
    opt.step()
with captured_step():
    for _ in range(4): step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=True) as prof:
        for _ in range(3): step()
        torch.cuda.synchronize()
agg = collections.defaultdict(lambda: [0.0, 0]); tot = 0
for e in prof.events():
    if e.device_type == DeviceType.CUDA:
        agg[e.name][0] += e.device_time_total / 3; agg[e.name][1] += 1; tot += e.device_time_total / 3
print(f'kernel sum per step {tot/1000:.2f} ms')
for name, (us, n) in sorted(agg.items(), key=lambda kv: -kv[1][0])[:40]:
    print(f'{us:9.1f} us {100*us/tot:5.1f}% {n//3:5d}x  {name[:120]}')
print(prof.key_averages(group_by_input_shape=True).table(
    sort_by='self_cuda_time_total', row_limit=45, max_name_column_width=40, max_shapes_column_width=80))
