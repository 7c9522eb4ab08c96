#!/usr/bin/env bash
# Throughput on 1 and N GPUs at the same per-GPU batch (2 images), real input sizes,
# fp16, 6 loader workers per GPU: Mask R-CNN BiFormer-S (1333x800) and UperNet
# BiFormer-S (512x512 crops, SyncBN in the stem under DDP). Also prints the norm type
# the Runner gives the stem under DDP. (docs/gpu_runs.md)
#   bash docs/scripts/dist_scaling.sh N OUT_DIR
set -u
N=${1:?usage: dist_scaling.sh N OUT_DIR}
OUTD=${2:?usage: dist_scaling.sh N OUT_DIR}
source "$(dirname "$0")/lib.sh"
mkdir -p "$OUTD"
[ -d data/g_coco128 ] || python3 tools/generate_data.py coco data/g_coco128 --num-train 128 --num-val 8 --size 800 1216 >/dev/null
[ -d data/g_ade ] || python3 tools/generate_data.py ade20k data/g_ade --num-train 32 --num-val 8 --size 512 683 >/dev/null
DET="configs/det/maskrcnn_biformer_s.py $(opts det data/g_coco128 800 1216 1 2) train_cfg.val_interval=9"
SEG="configs/seg/upernet_biformer_s.py $(opts seg data/g_ade 512 683 15 2) train_cfg.val_interval=1000"
run() {  # name gpus config opts...
    local name=$1 gpus=$2 cfg=$3; shift 3
    PORT=$((29600 + RANDOM % 300)) timeout ${LIMIT:-150} bash tools/dist_train.sh "$cfg" "$gpus" \
        --work-dir "$OUTD/$name" --cfg-options "$@" $WORKERS > "$OUTD/$name.log" 2>&1
    echo "== $name ($gpus GPU): exit $?"; summary "$OUTD/$name.log"
}
PORT=29590 timeout 90 python3 -m torch.distributed.run --nproc_per_node=$N docs/scripts/norm_type.py $SEG 2>/dev/null | grep "stem norm"
run det_g1 1 $DET
run det_g$N $N $DET
run seg_g1 1 $SEG
run seg_g$N $N $SEG
