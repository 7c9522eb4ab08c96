"""CUDA kernel times of BRA's forward + backward, per backend (GPU).

    python3 .dev_scripts/profile_bra.py [--stage "cls s1"] [--rows 15]

Uses the stage shapes of ``bra_kernel_sweep.py``; prints torch.profiler's kernel table
of 5 steps (after warm-up) for each backend asked for.
"""
import argparse

import torch

from bra_kernel_sweep import STAGES  # noqa: E402
from mmbiformer.benchmarking.timing import cuda_profile  # noqa: E402

from mmbiformer.ops import BiLevelRoutingAttention, set_attn_impl  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--stage', action='append', help='stage names (default: all)')
    parser.add_argument('--impl', action='append', help='backends (default: sdpa, triton)')
    parser.add_argument('--rows', type=int, default=15)
    args = parser.parse_args()
    for name, N, H, W, C, m, S, topk in STAGES:
        if args.stage and name not in args.stage:
            continue
        op = BiLevelRoutingAttention(C, m, n_win=S, topk=topk, side_dwconv=5,
                                     auto_pad=True).cuda()
        x = torch.randn(N, H, W, C, device='cuda', requires_grad=True)
        for impl in args.impl or ['sdpa', 'triton']:
            set_attn_impl(op, impl)

            def step():
                with torch.autocast('cuda', dtype=torch.bfloat16):
                    out = op(x)
                out.float().sum().backward()
            prof = cuda_profile(step, 5)
            print(f'\n### {name} {N}x{H}x{W}x{C} n_win {S} topk {topk}: {impl}, 5 steps')
            print(prof.key_averages().table(sort_by='self_cuda_time_total',
                                            row_limit=args.rows, max_name_column_width=50))


if __name__ == '__main__':
    main()
