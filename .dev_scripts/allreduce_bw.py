"""NCCL all-reduce speed for a buffer the size of Mask R-CNN BiFormer-S's gradients.
    torchrun --nproc_per_node=N .dev_scripts/allreduce_bw.py [MILLION_FLOATS]"""
import os
import sys
import time

import torch
import torch.distributed as dist

dist.init_process_group('nccl')
rank = dist.get_rank()
torch.cuda.set_device(int(os.environ['LOCAL_RANK']))
numel = int(float(sys.argv[1] if len(sys.argv) > 1 else 69) * 1e6)
buf = torch.ones(numel, device='cuda')
for _ in range(3):
    dist.all_reduce(buf)
torch.cuda.synchronize()
start, iters = time.perf_counter(), 10
for _ in range(iters):
    dist.all_reduce(buf)
torch.cuda.synchronize()
ms = (time.perf_counter() - start) / iters * 1e3
if rank == 0:
    n = dist.get_world_size()
    bus = numel * 4 * 2 * (n - 1) / n / ms / 1e6  # GB/s, NCCL's "bus bandwidth"
    print(f'all_reduce {numel * 4 / 2**20:.0f} MiB fp32 on {n} GPUs: {ms:.2f} ms, '
          f'bus bandwidth {bus:.1f} GB/s')
dist.destroy_process_group()
