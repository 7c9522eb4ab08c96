#!/usr/bin/env bash
# Speed and memory of mmbiformer's BRA backends against the official BiFormer code and
# timm's Swin-T, one after another on the same GPU (docs/benchmark_history.md).
#   bash .dev_scripts/speed_side_by_side.sh OFFICIAL_ROOT [SECTION...]
# OFFICIAL_ROOT: a checkout of github.com/rayleizhu/BiFormer (models/, ops/).
# SECTION: bra, cls, trunk, compile (default: bra cls trunk).
set -u
ROOT=${1:?usage: speed_side_by_side.sh OFFICIAL_ROOT [SECTION...]}
shift
SECTIONS=${*:-bra cls trunk}
B="python3 tools/benchmark.py"
ITERS=${ITERS:-20}
SWIN=swin_tiny_patch4_window7_224
for s in $SECTIONS; do
    case $s in
    bra)
        $B bra --iters $ITERS --official-root "$ROOT" ;;
    cls)
        $B cls --arch small --batch 128 --iters $ITERS --impl official --official-root "$ROOT"
        for impl in sdpa triton; do
            $B cls --arch small --batch 128 --iters $ITERS --impl $impl
            $B cls --arch small --batch 128 --iters $ITERS --impl $impl --channels-last
        done
        $B cls --batch 128 --iters $ITERS --timm $SWIN ;;
    trunk)
        for impl in official sdpa triton; do
            $B trunk --arch small --shape 2 800 1216 --n-win 16 --iters $ITERS --impl $impl \
                --official-root "$ROOT"
        done ;;
    compile)
        $B cls --arch small --batch 128 --iters $ITERS --impl triton --compile --channels-last
        $B cls --batch 128 --iters $ITERS --timm $SWIN --compile
        $B trunk --arch small --shape 2 800 1216 --n-win 16 --iters $ITERS --impl triton \
            --compile ;;
    *) echo "unknown section $s"; exit 2 ;;
    esac
done
