#!/usr/bin/env bash
# Distributed check of Mask R-CNN BiFormer-S on generated COCO data (1333x800, fp16):
# 1-GPU vs N-GPU throughput at 2 images per GPU, a run killed mid-training and resumed
# with --resume, and dist_test.sh on N GPUs vs 1 GPU for the same checkpoint.
#   bash .dev_scripts/dist_check.sh N OUT_DIR
set -u
N=${1:-2}
OUTD=${2:-/tmp/dist}
CFG=configs/det/maskrcnn_biformer_s.py
mkdir -p "$OUTD"
python3 tools/generate_data.py coco data/dc --num-train 64 --num-val 8 --size 800 1216 >/dev/null
source "$(dirname "$0")/lib.sh"
O=$(opts det data/dc 800 1216 3 2)
PORT=29510 timeout 200 bash tools/dist_train.sh $CFG 1 --work-dir "$OUTD/g1" --cfg-options $O train_cfg.max_epochs=1 > "$OUTD/g1.log" 2>&1
echo "1 GPU: exit $?"
PORT=29511 timeout -s INT -k 20 "${KILL_AFTER:-100}" bash tools/dist_train.sh $CFG "$N" --work-dir "$OUTD/gN" --cfg-options $O > "$OUTD/gN.log" 2>&1
echo "$N GPUs, interrupted: exit $? ; checkpoints: $(ls "$OUTD/gN" | grep pth | tr '\n' ' ')"
PORT=29512 bash tools/dist_train.sh $CFG "$N" --work-dir "$OUTD/gN" --resume --cfg-options $O > "$OUTD/gN_resume.log" 2>&1
echo "$N GPUs, resumed: exit $? ; checkpoints: $(ls "$OUTD/gN" | grep pth | tr '\n' ' ')"
CK=$(cat "$OUTD/gN/last_checkpoint")
PORT=29513 bash tools/dist_test.sh $CFG "$CK" "$N" --work-dir "$OUTD/tN" --cfg-options $O > "$OUTD/testN.log" 2>&1
PORT=29514 bash tools/dist_test.sh $CFG "$CK" 1 --work-dir "$OUTD/t1" --cfg-options $O > "$OUTD/test1.log" 2>&1
for f in g1 gN gN_resume; do
    echo "== $f"; grep -E "Epoch\(train\) +\[[0-9]+\]\[ *[0-9]+/[0-9]+\]" "$OUTD/$f.log" | tail -1 | cut -c1-200
    grep -E "resumed epoch|Load checkpoint" "$OUTD/$f.log" | head -2 | cut -c1-200
done
echo "== test on $N GPUs"; grep "^metrics:" "$OUTD/testN.log"
echo "== test on 1 GPU"; grep "^metrics:" "$OUTD/test1.log"
