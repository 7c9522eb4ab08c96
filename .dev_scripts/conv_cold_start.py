"""Host cost of cuDNN convolutions on shapes seen for the first time (plan set-up)
against shapes seen before, for the layers whose input shapes vary in training:
  * Mask R-CNN's mask head: its batch is the number of positive RoIs;
  * BiFormer's depthwise convs (position embedding 3x3, LCE 5x5) at detection sizes,
    whose map size follows the padded image size, cuDNN vs PyTorch's own kernels
    (mmbiformer.ops.dwconv); and the same at the classification size (fixed shape),
    where only the warm speed matters.
fp16 autocast, forward + backward, times in ms per call (synchronised).
    python .dev_scripts/conv_cold_start.py [--no-cudnn] [--benchmark]"""
import argparse
import random
import time

import torch
from torch import nn

from mmbiformer.ops import dwconv  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument('--no-cudnn', action='store_true')
parser.add_argument('--benchmark', action='store_true', help='cudnn.benchmark = True')
parser.add_argument('--shapes', type=int, default=30)
args = parser.parse_args()
torch.backends.cudnn.enabled = not args.no_cudnn
torch.backends.cudnn.benchmark = args.benchmark
MODE = 'no cuDNN' if args.no_cudnn else ('cuDNN benchmark' if args.benchmark else 'cuDNN')


def step(layer, shape, reps=1):
    x = torch.randn(shape, device='cuda', requires_grad=True)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(reps):
        with torch.autocast('cuda', torch.float16):
            y = layer(x)
        y.float().sum().backward()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1e3 / reps


def cold_warm(layer, shapes):
    first = [step(layer, s) for s in shapes]
    again = [step(layer, s, reps=5) for s in shapes]
    return (f'new shape {sum(first) / len(first):.1f} ms (max {max(first):.1f}), '
            f'seen before {sum(again) / len(again):.2f} ms')


head = nn.Sequential(*[m for _ in range(4) for m in (nn.Conv2d(256, 256, 3, padding=1), nn.ReLU())],
                     nn.ConvTranspose2d(256, 256, 2, stride=2), nn.ReLU(),
                     nn.Conv2d(256, 80, 1)).cuda()
step(head, (7, 256, 14, 14))  # CUDA context, cuBLAS/cuDNN handles
counts = random.Random(0).sample(range(8, 257), args.shapes)
print(f'mask head, {MODE}, {len(counts)} RoI counts in 8..256: '
      + cold_warm(head, [(n, 256, 14, 14) for n in counts]))

rng = random.Random(1)
for channels, stride in ((64, 4), (256, 16)):
    # padded 1333x800-type images: height and width in steps of 32 px
    sizes = [(800 // stride + rng.randrange(-4, 1) * 32 // stride,
              1216 // stride + rng.randrange(-8, 4) * 32 // stride) for _ in range(8)]
    sizes = list(dict.fromkeys(sizes))
    for k in (3, 5):
        layer = dwconv.DepthwiseConv2d(channels, k).cuda()
        for impl in ('cudnn', 'native'):
            layer.impl = impl
            print(f'depthwise {k}x{k}, {channels} ch, batch 2, stride {stride} maps, '
                  f'{impl if impl == "native" else MODE}: '
                  + cold_warm(layer, [(2, channels, h, w) for h, w in sizes]))
for channels, side in ((64, 56), (512, 7)):
    for k in (3, 5):
        layer = dwconv.DepthwiseConv2d(channels, k).cuda()
        for impl in ('cudnn', 'native'):
            layer.impl = impl
            step(layer, (128, channels, side, side))
            ms = step(layer, (128, channels, side, side), reps=20)
            print(f'depthwise {k}x{k}, {channels} ch, batch 128 {side}x{side} (classification), '
                  f'{impl if impl == "native" else MODE}: {ms:.3f} ms')
