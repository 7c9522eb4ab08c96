"""What a new input size costs in BiFormer's trunk, and where: fwd+bwd at K new sizes
then at the same sizes again, under variants that switch off one shape-dependent
library at a time, then the host ops of one new-size step (profiler, most CPU first).
    python .dev_scripts/new_size_probe.py [--arch small] [--sizes 8]"""
import argparse
import contextlib
import time

import torch

from mmbiformer.models import BiFormer  # noqa: E402
from mmbiformer.ops.dwconv import GemmConv2d  # noqa: E402


@contextlib.contextmanager
def variant(name, model):
    """default: as the dense configs; cudnn-strided-convs: the stem / down-sampling
    convs through cuDNN (as nn.Conv2d); no-cudnn: cuDNN off altogether."""
    was = torch.backends.cudnn.enabled
    strided = [m for m in model.modules() if isinstance(m, GemmConv2d)]
    if name == 'no-cudnn':
        torch.backends.cudnn.enabled = False
    if name == 'cudnn-strided-convs':
        for m in strided:
            m.impl = 'cudnn'
    yield
    torch.backends.cudnn.enabled = was
    for m in strided:
        m.impl = 'native'


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--arch', default='small')
    p.add_argument('--sizes', type=int, default=8)
    p.add_argument('--variants', nargs='+',
                   default=['default', 'cudnn-strided-convs', 'no-cudnn'])
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
        with variant(name, model):
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
