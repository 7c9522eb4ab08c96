"""Run 19: which aten ops (with shapes) launch the cls captured step's kernels: the step run
eagerly under captured_step() (the kernels the graph replays), profiled with shapes,
as tools/benchmark.py cls builds it (BiFormer-S, batch 128, bf16, fused AdamW). Writes
by_op.txt, by_shape.txt and by_stack.txt to $OUT (or .); needs a GPU.

    PYTHONPATH=. python3 .dev_scripts/step_ops_profile.py
"""
import os
import sys

import torch
import torch.nn.functional as F
from mmbiformer.ops.policy import captured_step
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, 'tools')
import benchmark as B  # noqa: E402  (tools/benchmark.py: the model it times)

OUT = os.environ.get('OUT', '.')


def attrib(args, device):
    model = B.build(args, 'cls', device)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    y = torch.randint(0, 1000, (args.batch,), device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, capturable=True, fused=True)
    model.train()

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast('cuda', dtype=torch.bfloat16, cache_enabled=False):
            out = model(x)
        F.cross_entropy(out.float(), y).backward()
        opt.step()

    with captured_step():
        for _ in range(3):
            step()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA],
                     record_shapes=True, with_stack=True) as prof:
            step()
            torch.cuda.synchronize()
    ka = prof.key_averages(group_by_input_shape=True)
    with open(f'{OUT}/by_shape.txt', 'w') as f:
        f.write(ka.table(sort_by='self_device_time_total', row_limit=80,
                         max_name_column_width=45, max_shapes_column_width=110))
    ka = prof.key_averages(group_by_stack_n=6)
    with open(f'{OUT}/by_stack.txt', 'w') as f:
        f.write(ka.table(sort_by='self_device_time_total', row_limit=60,
                         max_name_column_width=40))
    ka = prof.key_averages()
    with open(f'{OUT}/by_op.txt', 'w') as f:
        f.write(ka.table(sort_by='self_device_time_total', row_limit=80,
                         max_name_column_width=80))


B.bench_cls = attrib
B.main(['cls', '--arch', 'small', '--batch', '128', '--amp', 'bf16', '--mode', 'train'])
