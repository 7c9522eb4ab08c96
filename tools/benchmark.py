#!/usr/bin/env python
"""Speed and peak memory of BiFormer: classifier, dense trunk, and the BRA op alone.

    python tools/benchmark.py cls --arch small --batch 128 --amp bf16        # img/s
    python tools/benchmark.py trunk --arch small --shape 2 800 1216 --n-win 16
    python tools/benchmark.py bra                                          # op sizes

Timings use CUDA events on a GPU (wall clock on CPU), after warm-up iterations;
memory is ``torch.cuda.max_memory_allocated`` for the measured step.
"""
import argparse
import os.path as osp
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, osp.join(osp.dirname(__file__), '..'))
from mmbiformer.models import BiFormer  # noqa: E402
from mmbiformer.ops import BiLevelRoutingAttention  # noqa: E402

DTYPES = {'none': None, 'fp16': torch.float16, 'bf16': torch.bfloat16}
# (name, N, H, W, C, n_win, topk, heads): classification stage 1, segmentation
# (512 crop) and detection (800x1216) stage-1 maps.
BRA_SIZES = [('cls 224', 128, 56, 56, 64, 7, 1, 2), ('seg 512', 8, 128, 128, 64, 8, 1, 2),
             ('det 800x1216', 2, 208, 304, 64, 16, 1, 2)]


def timed(step, iters: int, warmup: int, device) -> tuple:
    """(ms per step, peak GiB) of ``step()``."""
    for _ in range(warmup):
        step()
    cuda = device.type == 'cuda'
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    if cuda:
        end.record()
        torch.cuda.synchronize()
        ms = start.elapsed_time(end) / iters
        return ms, torch.cuda.max_memory_allocated() / 2**30
    return (time.perf_counter() - t0) * 1000 / iters, float('nan')


def classifier(arch: str, n_win: int):
    head = torch.nn.Linear(768 if arch == 'base' else 512, 1000)
    backbone = BiFormer(arch, n_win=n_win, out_indices=(3, ), out_norm='batchnorm')
    return torch.nn.ModuleDict(dict(backbone=backbone, head=head))


def bench_cls(args, device):
    model = classifier(args.arch, args.n_win or 7).to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    y = torch.randint(0, 1000, (args.batch, ), device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    dtype = DTYPES[args.amp]

    def logits():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            feat = model['backbone'](x)[-1]
            return model['head'](feat.flatten(2).mean(-1))

    def train_step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(logits().float(), y).backward()
        opt.step()

    def infer_step():
        with torch.no_grad():
            logits()

    rows = []
    if args.mode in ('train', 'both'):
        model.train()
        ms, mem = timed(train_step, args.iters, args.warmup, device)
        rows.append(('train', ms, args.batch * 1000 / ms, mem))
    if args.mode in ('infer', 'both'):
        model.eval()
        ms, mem = timed(infer_step, args.iters, args.warmup, device)
        rows.append(('infer', ms, args.batch * 1000 / ms, mem))
    print(f'BiFormer-{args.arch} classifier, batch {args.batch}, {args.size}x{args.size}, '
          f'amp {args.amp}, {device_name(device)}')
    print(f'{"mode":<6} {"ms/step":>9} {"img/s":>9} {"peak GiB":>9}')
    for mode, ms, ips, mem in rows:
        print(f'{mode:<6} {ms:9.1f} {ips:9.1f} {mem:9.2f}')


def bench_trunk(args, device):
    n, h, w = args.shape
    model = BiFormer(args.arch, n_win=args.n_win or 16).to(device).train()
    x = torch.randn(n, 3, h, w, device=device)
    dtype = DTYPES[args.amp]

    def step():
        model.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            outs = model(x)
        sum(o.float().mean() for o in outs).backward()

    ms, mem = timed(step, args.iters, args.warmup, device)
    print(f'BiFormer-{args.arch} trunk fwd+bwd {n}x3x{h}x{w}, n_win {args.n_win or 16}, '
          f'amp {args.amp}, {device_name(device)}: {ms:.1f} ms, {mem:.2f} GiB')


def bench_bra(args, device):
    dtype = DTYPES[args.amp]
    print(f'BRA fwd+bwd, amp {args.amp}, {device_name(device)}')
    print(f'{"size":<14} {"shape":<22} {"n_win":>5} {"topk":>4} {"ms":>8} {"peak GiB":>9}')
    for name, n, h, w, c, n_win, topk, heads in BRA_SIZES:
        if device.type == 'cpu':
            n = 1
        op = BiLevelRoutingAttention(c, heads, n_win=n_win, topk=topk, side_dwconv=5,
                                     auto_pad=True).to(device)
        x = torch.randn(n, h, w, c, device=device, requires_grad=True)

        def step():
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                out = op(x)
            out.float().sum().backward()

        ms, mem = timed(step, args.iters, args.warmup, device)
        print(f'{name:<14} {f"{n}x{h}x{w}x{c}":<22} {n_win:>5} {topk:>4} {ms:8.2f} {mem:9.2f}')


def device_name(device) -> str:
    return torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('what', choices=['cls', 'trunk', 'bra'])
    parser.add_argument('--arch', default='small', choices=['tiny', 'small', 'base'])
    parser.add_argument('--batch', type=int, default=128)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--shape', type=int, nargs=3, default=(2, 800, 1216),
                        metavar=('N', 'H', 'W'))
    parser.add_argument('--n-win', type=int, default=None)
    parser.add_argument('--amp', choices=sorted(DTYPES), default='bf16')
    parser.add_argument('--mode', choices=['train', 'infer', 'both'], default='both')
    parser.add_argument('--channels-last', action='store_true')
    parser.add_argument('--iters', type=int, default=20)
    parser.add_argument('--warmup', type=int, default=5)
    args = parser.parse_args(argv)
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    {'cls': bench_cls, 'trunk': bench_trunk, 'bra': bench_bra}[args.what](args, device)


if __name__ == '__main__':
    main()
