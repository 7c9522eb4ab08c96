#!/usr/bin/env bash
# The fused-block speed issue, side by side in one run on one GPU: BiFormer-S against
# timm's Swin-T (classifier, batch 128, bf16, AdamW) and mmdet's Swin-T backbone (trunk
# 2x3x800x1216), eager and with the training step captured in a CUDA graph, then the
# kernel profile of our training step.
#   bash .dev_scripts/fused_block.sh [BEFORE_ROOT] [SECTION...]
# BEFORE_ROOT: an older copy of the project (its tools/ and mmbiformer/, e.g. from
# `git archive`), timed with its own defaults: the "before" rows ('-': none).
# SECTION: cls, graph, trunk, profile (default: all). ITERS (default 20) timed steps
# after 5 warm-up steps; PROFILE_IMPL (default sdpa) the backend profiled.
set -u
BEFORE=${1:--}
shift || true
SECTIONS=${*:-cls graph trunk profile}
ITERS=${ITERS:-20}
B="python3 tools/benchmark.py"
CLS="cls --arch small --batch 128 --iters $ITERS"
SWIN="cls --batch 128 --iters $ITERS --timm swin_tiny_patch4_window7_224"
TRUNK="trunk --arch small --shape 2 800 1216 --n-win 16 --iters $ITERS"

before() {  # the older copy's benchmark, importing the older copy's package (tools no
    # longer put their root on sys.path: PYTHONPATH names it, ahead of any other checkout)
    if [ "$BEFORE" != - ]; then
        (cd "$BEFORE" && PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" python3 tools/benchmark.py "$@")
    fi
}

for s in $SECTIONS; do
    echo "== $s =="
    case $s in
    cls)
        before $CLS
        for impl in sdpa triton; do $B $CLS --impl $impl; done
        $B $CLS --impl sdpa --dwconv-impl triton
        $B $SWIN ;;
    graph)
        for impl in sdpa triton; do $B $CLS --impl $impl --mode train --cuda-graph; done
        $B $SWIN --mode train --cuda-graph ;;
    trunk)
        before $TRUNK
        for impl in sdpa triton; do $B $TRUNK --impl $impl; done
        $B $TRUNK --mmdet-swin ;;
    profile)
        $B cls --arch small --batch 128 --iters 5 --mode train \
            --impl "${PROFILE_IMPL:-sdpa}" --profile 30 ;;
    *) echo "unknown section $s"; exit 2 ;;
    esac
done
