#!/usr/bin/env bash
# Throughput on 1 and N GPUs at the same per-GPU batch (2 images), real input sizes,
# fp16, 6 loader workers per GPU: Mask R-CNN BiFormer-S (1333x800) and UperNet
# BiFormer-S (512x512 crops, SyncBN in the stem under DDP). Also prints the norm type
# the Runner gives the stem under DDP. (docs/gpu_runs.md)
#   bash .dev_scripts/dist_scaling.sh N OUT_DIR
# RUNS: a subset of "det_g1 det_gN seg_g1 seg_gN" (default: all four).
set -u
N=${1:?usage: dist_scaling.sh N OUT_DIR}
OUTD=${2:?usage: dist_scaling.sh N OUT_DIR}
source "$(dirname "$0")/lib.sh"
mkdir -p "$OUTD"
RUNS=${RUNS:-det_g1 det_gN seg_g1 seg_gN}
[[ $RUNS != *det* || -d data/g_coco128 ]] || python3 tools/generate_data.py coco data/g_coco128 --num-train 128 --num-val 8 --size 800 1216 >/dev/null
[[ $RUNS != *seg* || -d data/g_ade ]] || python3 tools/generate_data.py ade20k data/g_ade --num-train 32 --num-val 8 --size 512 683 >/dev/null
# Same number of iterations (64) on 1 and N GPUs: N epochs of the 128 images on N GPUs.
det() { echo "configs/det/maskrcnn_biformer_s.py $(opts det data/g_coco128 800 1216 $1 2) train_cfg.val_interval=99 default_hooks.checkpoint.interval=99"; }
SEG="configs/seg/upernet_biformer_s.py $(opts seg data/g_ade 512 683 15 2) train_cfg.val_interval=1000"
run() {  # name gpus config opts...
    local name=$1 gpus=$2 cfg=$3; shift 3
    PORT=$((29600 + RANDOM % 300)) timeout ${LIMIT:-150} bash tools/dist_train.sh "$cfg" "$gpus" \
        --work-dir "$OUTD/$name" --cfg-options "$@" $WORKERS > "$OUTD/$name.log" 2>&1
    echo "== $name ($gpus GPU): exit $?"; summary "$OUTD/$name.log"
}
[[ $RUNS != *seg_gN* ]] || PORT=29590 timeout 90 python3 -m torch.distributed.run --nproc_per_node=$N .dev_scripts/norm_type.py $SEG 2>/dev/null | grep "stem norm"
for r in $RUNS; do
    case $r in
    det_g1) run det_g1 1 $(det 1) ;;
    det_gN) run det_g$N $N $(det $N) ;;
    seg_g1) run seg_g1 1 $SEG ;;
    seg_gN) run seg_g$N $N $SEG ;;
    *) echo "unknown run $r (det_g1 det_gN seg_g1 seg_gN)" >&2 ;;
    esac
done
