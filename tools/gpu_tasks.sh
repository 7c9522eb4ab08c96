#!/usr/bin/env bash
# Train and test each task's S config on one GPU, on generated data at the real input
# sizes, mixed precision, data loading in 6 worker processes (docs/gpu_runs.md).
#
#   bash tools/gpu_tasks.sh OUT_DIR [TASK...]
#
# TASK: cls, retinanet, det (Mask R-CNN), seg (UperNet), cls-compile, and
# cls-quadtree / cls-shunted / cls-window (configs/cls/ablation/, same recipe as cls),
# rtmdet / rtmdet-bra (mmdet's RTMDet-s, and configs/det/rtmdet_bra_s.py, on
# small-object data at 640) (default: cls retinanet det seg). Generated data goes to data/g_in, data/g_coco,
# data/g_ade (kept).
# Environment: LIMIT (seconds per training, default 200), CLS_EPOCHS (20), DET_EPOCHS
# (RetinaNet, 4), RTM_EPOCHS (8), EXTRA_OPTS (more --cfg-options for every run, e.g. custom_hooks=[]).
# Each run's log is OUT_DIR/NAME.log; the script stops at the first failing command.
set -euo pipefail
OUTD=${1:?usage: gpu_tasks.sh OUT_DIR [TASK...]}
shift
mkdir -p "$OUTD"
source "$(dirname "$0")/run_lib.sh"

train_test() {  # name config opts...
    local name=$1 cfg=$2
    shift 2
    echo "== $name: training (log $OUTD/$name.log)"
    timeout "${LIMIT:-200}" python3 tools/train.py "$cfg" --amp --work-dir "$OUTD/$name" --start-over \
        --cfg-options "$@" ${EXTRA_OPTS:-} $WORKERS > "$OUTD/$name.log" 2>&1
    summary "$OUTD/$name.log"
    echo "== $name: testing (log $OUTD/$name.test.log)"
    python3 tools/test.py "$cfg" "$(cat "$OUTD/$name/last_checkpoint")" --work-dir "$OUTD/$name" \
        --cfg-options "$@" ${EXTRA_OPTS:-} > "$OUTD/$name.test.log" 2>&1
    grep "^metrics:" "$OUTD/$name.test.log" | cut -c1-300 || true
}

for task in ${*:-cls retinanet det seg}; do
    case $task in
    cls|cls-compile|cls-quadtree|cls-shunted|cls-window)
        [ -d data/g_in ] || python3 tools/generate_data.py imagenet data/g_in --num-classes 8 \
            --num-train 64 --num-val 8 --size 256 256
        extra="" cfg=configs/cls/biformer_s_in1k.py
        if [ "$task" = cls-compile ]; then  # the config's hooks, and the backbone compiled
            cfg="$OUTD/cls_compile.py"
            printf "_base_ = '%s'\ncustom_hooks = [dict(type='BackboneRuntimeHook', compile=True), *_base_.custom_hooks]\n" \
                "$PWD/configs/cls/biformer_s_in1k.py" > "$cfg"
        fi
        case $task in cls-quadtree|cls-shunted|cls-window)
            cfg=configs/cls/ablation/biformer_s_${task#cls-}_in1k.py ;; esac
        # No Mixup/CutMix and lr 2.5e-4 (the recipe's 1e-3 is for 1024 images a step and
        # 300 epochs): a few hundred iterations from scratch then learn the classes.
        train_test "$task" "$cfg" \
            $(opts cls data/g_in 224 224 "${CLS_EPOCHS:-20}" 64) \
            model.train_cfg=None optim_wrapper.optimizer.lr=2.5e-4 \
            train_cfg.val_interval=10 default_hooks.checkpoint.max_keep_ckpts=1 $extra ;;
    retinanet|det)
        [ -d data/g_coco ] || python3 tools/generate_data.py coco data/g_coco --num-train 64 \
            --num-val 8 --size 800 1216
        cfg=configs/det/retinanet_biformer_s.py n=${DET_EPOCHS:-4}
        if [ "$task" = det ]; then cfg=configs/det/maskrcnn_biformer_s.py n=2; fi
        train_test "$task" "$cfg" $(opts "$task" data/g_coco 800 1216 "$n" 2) \
            default_hooks.checkpoint.max_keep_ckpts=1 ;;
    seg)
        [ -d data/g_ade ] || python3 tools/generate_data.py ade20k data/g_ade --num-train 32 \
            --num-val 8 --size 512 683
        train_test seg configs/seg/upernet_biformer_s.py $(opts seg data/g_ade 512 683 20 2) ;;
    rtmdet|rtmdet-bra)
        [ -d data/g_small ] || python3 tools/generate_data.py coco data/g_small --num-train 320 \
            --num-val 32 --size 640 640 --small-objects
        cfg=configs/det/rtmdet_bra_s.py
        if [ "$task" = rtmdet ]; then  # the toolbox's own config, as a file for the tools
            cfg=$OUTD/rtmdet-s_coco.py
            echo "_base_ = 'mmdet::rtmdet/rtmdet_s_8xb32-300e_coco.py'" > "$cfg"
        fi
        # 8 images a step (the recipe: 32 on each of 8 GPUs); warm-up 50 iterations.
        train_test "$task" "$cfg" $(opts rtmdet data/g_small 640 640 "${RTM_EPOCHS:-8}" 8) \
            param_scheduler.0.end=50 default_hooks.checkpoint.max_keep_ckpts=1 ;;
    *) echo "unknown task $task (cls, cls-compile, cls-quadtree, cls-shunted, cls-window," \
            "retinanet, det, seg, rtmdet, rtmdet-bra)" >&2; exit 2 ;;
    esac
done
