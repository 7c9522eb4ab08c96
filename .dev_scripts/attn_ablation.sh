#!/usr/bin/env bash
# The token-mixer ablation figures of docs/benchmark_history.md and the README (one GPU):
# CUDA vs CPU agreement of each mixer, classifier speed and memory at 224 per variant,
# and the short training comparison on generated ImageNet-layout data.
#
#   bash .dev_scripts/attn_ablation.sh OUT_DIR [speed] [train]   (default: both)
set -euo pipefail
OUTD=${1:?usage: attn_ablation.sh OUT_DIR [speed] [train]}
shift
mkdir -p "$OUTD"
for part in ${*:-speed train}; do
    case $part in
    speed)
        python3 - <<'PY' 2>&1 | tee "$OUTD/cuda_check.txt"
import torch
from mmbiformer.ops.quadtree import QuadTreeAttention
from mmbiformer.ops.shunted import ShuntedSelfAttention
from mmbiformer.ops.window_attention import WindowAttention
torch.manual_seed(0)
for op in (QuadTreeAttention(64, 2, levels=3, topk=8), ShuntedSelfAttention(64, 2, sr_ratio=4),
           WindowAttention(64, 2)):
    x = torch.randn(2, 29, 43, 64)
    ref = op(x)
    got = op.cuda()(x.cuda()).cpu()
    with torch.autocast('cuda', dtype=torch.bfloat16):
        amp = op(x.cuda()).float().cpu()
    print(f'{type(op).__name__}: CUDA fp32 vs CPU max abs diff {(got - ref).abs().max():.2e}, '
          f'bf16 autocast vs CPU rel {((amp - ref).norm() / ref.norm()):.2e}')
PY
        for attn in bra quadtree shunted window; do
            python3 tools/benchmark.py cls --arch small --attn $attn --batch 128 --amp bf16 \
                --iters 10 2>&1 | tee "$OUTD/speed_$attn.txt"
        done ;;
    train)
        EXTRA_OPTS="custom_hooks=[]" LIMIT=${LIMIT:-150} bash tools/gpu_tasks.sh "$OUTD" \
            cls cls-quadtree cls-shunted cls-window ;;
    *) echo "unknown part $part (speed, train)" >&2; exit 2 ;;
    esac
done
