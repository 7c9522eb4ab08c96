"""BRA at every routed stage of the shipped configs: each backend, and tile sizes of the
Triton kernels (GPU).

    python3 .dev_scripts/bra_kernel_sweep.py [--sweep] [--dtype bf16]

Part 1: the whole BRA op (projection, routing, attention, LCE, output projection),
forward + backward under autocast, per backend. Part 2 (``--sweep``): the Triton
routed-attention op alone, forward and forward + backward, for tile sizes and warp
counts, against the floor of reading qkv and writing the output once (forward) at the
copy bandwidth measured in the same run.
"""
import argparse

import torch

from mmbiformer.ops import BiLevelRoutingAttention, set_attn_impl  # noqa: E402
from mmbiformer.ops.backends.triton import routed_attention as ra  # noqa: E402

# (name, N, H, W, dim, heads, n_win, topk): the BRA stages of the classification
# (224, batch 128), segmentation (512 crops, batch 8) and detection (800x1216, batch 2)
# configs, after auto-padding.
STAGES = [
    ('cls s1', 128, 56, 56, 64, 2, 7, 1), ('cls s2', 128, 28, 28, 128, 4, 7, 4),
    ('cls s3', 128, 14, 14, 256, 8, 7, 16),
    ('seg s1', 8, 128, 128, 64, 2, 8, 1), ('seg s2', 8, 64, 64, 128, 4, 8, 4),
    ('seg s3', 8, 32, 32, 256, 8, 8, 16),
    ('det s1', 2, 208, 304, 64, 2, 16, 1), ('det s2', 2, 112, 160, 128, 4, 16, 4),
    ('det s3', 2, 64, 80, 256, 8, 16, 16),
]

# (BLOCK_M, BLOCK_N, num_warps) tried by --sweep (each compiles three kernels).
TILES = [(16, 64, 4), (32, 64, 4), (64, 64, 4), (64, 64, 8), (64, 32, 4), (64, 128, 4),
         (128, 64, 8)]


def bench(fn, reps=50):
    import triton.testing
    return triton.testing.do_bench(fn, warmup=10, rep=reps, return_mode='median')


def copy_bandwidth() -> float:
    x = torch.empty(2**28, dtype=torch.uint8, device='cuda')
    y = torch.empty_like(x)
    ms = bench(lambda: y.copy_(x))
    return 2 * x.numel() / ms / 1e9  # TB/s (bytes read + written)


def whole_op(dtype):
    print(f'\n## whole BRA op, fwd+bwd, autocast {dtype}: ms per backend')
    print(f'{"stage":<8} {"shape":<16} {"n_win":>5} {"topk":>4} '
          f'{"reference":>10} {"sdpa":>8} {"triton":>8}')
    for name, N, H, W, C, m, S, topk in STAGES:
        torch.manual_seed(0)
        op = BiLevelRoutingAttention(C, m, n_win=S, topk=topk, side_dwconv=5,
                                     auto_pad=True).cuda()
        x = torch.randn(N, H, W, C, device='cuda', requires_grad=True)
        row = []
        for impl in ('reference', 'sdpa', 'triton'):
            set_attn_impl(op, impl)

            def step():
                with torch.autocast('cuda', dtype=dtype):
                    out = op(x)
                out.float().sum().backward()
            row.append(bench(step))
        print(f'{name:<8} {f"{N}x{H}x{W}x{C}":<16} {S:>5} {topk:>4} '
              + ' '.join(f'{t:8.3f}' for t in row))


def sweep(dtype, bw):
    print(f'\n## Triton routed attention alone, {dtype}; floor = read qkv + write out '
          f'once at {bw:.2f} TB/s')
    print(f'{"stage":<8} {"BM":>3} {"BN":>3} {"warps":>5} {"fwd ms":>8} {"floor ms":>8} '
          f'{"fwd+bwd ms":>10}')
    default = ra._blocks
    for name, N, H, W, C, m, S, topk in STAGES:
        qkv = torch.randn(N, H, W, 3 * C, device='cuda', dtype=dtype, requires_grad=True)
        regions = S * S
        index = torch.rand(N, regions, regions, device='cuda').topk(topk, -1).indices
        floor = (qkv.numel() + N * H * W * C) * qkv.element_size() / (bw * 1e9)  # ms
        grad = torch.randn(N, H, W, C, device='cuda', dtype=dtype)
        L = (H // S) * (W // S)
        for bm, bn, warps in TILES:
            if bm > max(16, 2 * L) or bn > max(16, 2 * L * topk):
                continue
            ra._blocks = lambda *a, bm=bm, bn=bn, warps=warps: dict(
                default(*a), BLOCK_M=bm, BLOCK_N=bn, num_warps=warps)
            try:
                fwd = bench(lambda: ra.routed_attention(qkv, index, S, m, C, C**-0.5))
                both = bench(lambda: torch.autograd.grad(
                    ra.routed_attention(qkv, index, S, m, C, C**-0.5), qkv, grad))
            except Exception as e:  # noqa: BLE001 (a tile that does not fit: say so)
                print(f'{name:<8} {bm:>3} {bn:>3} {warps:>5} failed: {type(e).__name__}')
                continue
            finally:
                ra._blocks = default
            print(f'{name:<8} {bm:>3} {bn:>3} {warps:>5} {fwd:8.3f} {floor:8.3f} '
                  f'{both:10.3f}')


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--dtype', choices=['bf16', 'fp16'], default='bf16')
    parser.add_argument('--sweep', action='store_true')
    args = parser.parse_args()
    dtype = torch.bfloat16 if args.dtype == 'bf16' else torch.float16
    bw = copy_bandwidth()
    print(f'{torch.cuda.get_device_name()}: copy bandwidth {bw:.2f} TB/s')
    whole_op(dtype)
    if args.sweep:
        sweep(dtype, bw)


if __name__ == '__main__':
    main()
