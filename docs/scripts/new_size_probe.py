"""What a new input size costs in BiFormer's trunk, and where: fwd+bwd at K new sizes
then at the same sizes again, under variants that switch off one shape-dependent
library at a time, then the host ops of one new-size step (profiler, most CPU first).
    python docs/scripts/new_size_probe.py [--arch small] [--sizes 8]"""
import argparse
import contextlib
import os.path as osp
import sys
import time

import torch

sys.path.insert(0, osp.join(osp.dirname(__file__), '..', '..'))
from mmbiformer.models import BiFormer  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402


@contextlib.contextmanager
def variant(name):
    was = torch.backends.cudnn.enabled
    if 'no-cudnn' in name:
        torch.backends.cudnn.enabled = False
    ctx = (sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                        SDPBackend.MATH]) if 'no-cudnn-sdpa' in name or 'no-cudnn' in name
           else contextlib.nullcontext())
    with ctx:
        yield
    torch.backends.cudnn.enabled = was


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--arch', default='small')
    p.add_argument('--sizes', type=int, default=8)
    p.add_argument('--variants', nargs='+',
                   default=['default', 'no-cudnn-sdpa', 'no-cudnn'])
    args = p.parse_args()
    model = BiFormer(args.arch, n_win=16, auto_pad=True).cuda().train()

    def step(x):
        model.zero_grad(set_to_none=True)
        with torch.autocast('cuda', dtype=torch.float16):
            outs = model(x)
        sum(o.float().mean() for o in outs).backward()
        torch.cuda.synchronize()

    step(torch.randn(2, 3, 800, 1216, device='cuda'))
    base = 0
    for name in args.variants:
        sizes = [(736 - 32 * (i % 4) - base, 1088 - 32 * (i // 4)) for i in range(args.sizes)]
        base += 160  # every variant meets sizes never seen before
        times = {}
        with variant(name):
            for phase in ('new', 'seen'):
                times[phase] = []
                for h, w in sizes:
                    x = torch.randn(2, 3, h, w, device='cuda')
                    t0 = time.perf_counter()
                    step(x)
                    times[phase].append(1000 * (time.perf_counter() - t0))
        extra = sorted(a - b for a, b in zip(times['new'], times['seen']))
        print(f'{name:<14} new {sum(times["new"]) / len(sizes):7.1f} ms, seen '
              f'{sum(times["seen"]) / len(sizes):7.1f} ms, extra median '
              f'{extra[len(extra) // 2]:6.1f} max {extra[-1]:6.1f} ms', flush=True)
    x = torch.randn(2, 3, 480, 640, device='cuda')
    with torch.profiler.profile(record_shapes=True) as prof:
        step(x)
    print(prof.key_averages(group_by_input_shape=True).table(
        sort_by='self_cpu_time_total', row_limit=14, max_name_column_width=40,
        max_shapes_column_width=60))


if __name__ == '__main__':
    main()
