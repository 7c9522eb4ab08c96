"""Time the NHWC depthwise-conv Triton kernels at BiFormer-S's shapes for several launch
settings, beside cuDNN (NCHW and channels-last), on one GPU (median of do_bench, us).

    python3 .dev_scripts/dwconv_sweep.py

fwd: conv + bias + residual (the LCE) or + input (the position embedding); dx: the
mirrored conv of the gradient; dw: weight and bias gradients. cuDNN's "bwd" is input +
weight gradients together (autograd of F.conv2d).
"""
import itertools

import torch
import torch.nn.functional as F
from triton.testing import do_bench

from mmbiformer.ops.backends.triton import dwconv

# (name, N, H, W, C, k, channels of the tensor x is a slice of)
SHAPES = [('cls s1 pos', 128, 56, 56, 64, 3, 64), ('cls s1 lce', 128, 56, 56, 64, 5, 192),
          ('cls s2 lce', 128, 28, 28, 128, 5, 384), ('cls s3 lce', 128, 14, 14, 256, 5, 768),
          ('det s1 lce', 2, 208, 304, 64, 5, 192)]
TILES = [(8, 8), (4, 16), (2, 32), (8, 16), (16, 8)]
CONFIGS = [dict(TH=th, TW=tw, BLOCK_C=bc, num_warps=nw, progs_per_sm=ps)
           for (th, tw), bc, nw, ps in itertools.product(TILES, (32, 64), (4, ), (4, ))]
CONFIGS += [dict(TH=8, TW=8, BLOCK_C=64, num_warps=8, progs_per_sm=4),
            dict(TH=8, TW=8, BLOCK_C=64, num_warps=4, progs_per_sm=16),
            dict(TH=4, TW=16, BLOCK_C=64, num_warps=4, progs_per_sm=16)]


def us(fn):
    return 1000 * do_bench(fn, warmup=10, rep=50, return_mode='median')


def main():
    dt = torch.bfloat16
    print(f'{torch.cuda.get_device_name()}; bf16; us (median)')
    for name, N, H, W, C, k, width in SHAPES:
        full = torch.randn(N, H, W, width, device='cuda', dtype=dt)
        x = full[..., width - C:]
        w = torch.randn(C, 1, k, k, device='cuda')
        b = torch.randn(C, device='cuda')
        res = torch.randn(N, H, W, C, device='cuda', dtype=dt)
        g = torch.randn(N, H, W, C, device='cuda', dtype=dt)
        out = torch.empty_like(res)
        gb = x.numel() * 2 * 3 / 1e9  # x, residual, out once each
        nchw = x.permute(0, 3, 1, 2).contiguous().requires_grad_()
        cl = x.contiguous().permute(0, 3, 1, 2).requires_grad_()
        wb = w.to(dt).requires_grad_()
        rows = []
        for label, inp in (('cudnn nchw', nchw), ('cudnn channels-last', cl)):
            y = F.conv2d(inp, wb, b.to(dt), padding=k // 2, groups=C)
            gy = g.permute(0, 3, 1, 2).contiguous(memory_format=(
                torch.contiguous_format if label.endswith('nchw') else torch.channels_last))
            fwd = us(lambda: F.conv2d(inp, wb, b.to(dt), padding=k // 2, groups=C))
            bwd = us(lambda: torch.autograd.grad(y, (inp, wb), gy, retain_graph=True))
            rows.append(f'  {label:<44} fwd {fwd:8.1f}   bwd {bwd:8.1f}')
        best = None
        for cfg in CONFIGS:
            fwd = us(lambda: dwconv.conv_nhwc_into(out, x, w, b, residual=res, cfg=cfg))
            dx = us(lambda: dwconv.conv_nhwc_into(out, g, w, flip=True, cfg=cfg))
            dw = us(lambda: dwconv.weight_grad(x, g, k, cfg=cfg))
            tag = (f'triton {cfg["TH"]}x{cfg["TW"]} c{cfg["BLOCK_C"]} w{cfg["num_warps"]} '
                   f'p{cfg["progs_per_sm"]}')
            rows.append(f'  {tag:<44} fwd {fwd:8.1f}   dx {dx:8.1f}   dw {dw:8.1f}')
            if best is None or fwd + dx + dw < best[0]:
                best = (fwd + dx + dw, tag)
        print(f'{name}: {N}x{H}x{W}x{C}, k {k}; fwd floor at 4 TB/s: '
              f'{gb / 4e3 * 1e6:.1f} us')
        print('\n'.join(rows))
        print(f'  best triton fwd+dx+dw: {best[1]} ({best[0]:.1f} us)')


if __name__ == '__main__':
    main()
