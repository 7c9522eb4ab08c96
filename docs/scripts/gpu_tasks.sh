#!/usr/bin/env bash
# Single-GPU training + test of each task's S config on generated data at the real input
# sizes, mixed precision, data loading in 6 worker processes (docs/gpu_runs.md).
#   bash docs/scripts/gpu_tasks.sh OUT_DIR [cls] [retinanet] [det] [seg] [cls-compile]
# EXTRA_OPTS: more --cfg-options for every run (e.g. custom_hooks=[] to evaluate the
# trained weights instead of the classifier's EMA).
set -u
OUTD=${1:?usage: gpu_tasks.sh OUT_DIR [TASK...]}
shift
mkdir -p "$OUTD"
source "$(dirname "$0")/lib.sh"
train_test() {  # name config opts...
    local name=$1 cfg=$2; shift 2
    timeout ${LIMIT:-200} python3 tools/train.py "$cfg" --amp --work-dir "$OUTD/$name" --cfg-options "$@" ${EXTRA_OPTS:-} $WORKERS > "$OUTD/$name.log" 2>&1
    echo "== $name train: exit $?"; summary "$OUTD/$name.log"
    [ -f "$OUTD/$name/last_checkpoint" ] || return
    python3 tools/test.py "$cfg" "$(cat "$OUTD/$name/last_checkpoint")" --work-dir "$OUTD/$name" --cfg-options "$@" ${EXTRA_OPTS:-} > "$OUTD/$name.test.log" 2>&1
    echo "== $name test: exit $?"; grep "^metrics:" "$OUTD/$name.test.log" | cut -c1-300
}
for task in ${*:-cls retinanet det seg}; do
    case $task in
    cls|cls-compile)
        [ -d data/g_in ] || python3 tools/generate_data.py imagenet data/g_in --num-classes 8 --num-train 64 --num-val 8 --size 256 256 >/dev/null
        extra=""; [ $task = cls-compile ] && extra="model.backbone.compile=True"
        # No Mixup/CutMix and lr 2.5e-4 (the recipe's 1e-3 is for 1024 images a step and
        # 300 epochs): a few hundred iterations from scratch then learn the classes.
        train_test $task configs/cls/biformer_s_in1k.py $(opts cls data/g_in 224 224 ${CLS_EPOCHS:-20} 64) \
            model.train_cfg=None optim_wrapper.optimizer.lr=2.5e-4 \
            train_cfg.val_interval=10 default_hooks.checkpoint.max_keep_ckpts=1 $extra ;;
    retinanet|det)
        [ -d data/g_coco ] || python3 tools/generate_data.py coco data/g_coco --num-train 64 --num-val 8 --size 800 1216 >/dev/null
        cfg=configs/det/retinanet_biformer_s.py; [ $task = det ] && cfg=configs/det/maskrcnn_biformer_s.py
        n=${DET_EPOCHS:-4}; [ $task = det ] && n=2
        train_test $task $cfg $(opts $task data/g_coco 800 1216 $n 2) default_hooks.checkpoint.max_keep_ckpts=1 ;;
    seg)
        [ -d data/g_ade ] || python3 tools/generate_data.py ade20k data/g_ade --num-train 32 --num-val 8 --size 512 683 >/dev/null
        train_test seg configs/seg/upernet_biformer_s.py $(opts seg data/g_ade 512 683 20 2) ;;
    *) echo "unknown task $task"; exit 2 ;;
    esac
done
