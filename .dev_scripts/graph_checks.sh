#!/usr/bin/env bash
# Issue 29's open checks of the backbone's CUDA graphs (docs/benchmark_history.md, run 8), each
# section's output in OUT_DIR/SECTION.txt, each under its own time limit.
#   bash .dev_scripts/graph_checks.sh OUT_DIR [SECTION...]
# SECTION (default: tests trunk cls upernet accuracy):
#   tests     the CUDA tests of the graphs, the Linear / GeluLinear ops and BRA's backends
#   trunk     detection trunk fwd+bwd, graphed, mlp_recompute None / gelu / mlp, and mmdet Swin-T
#   cls       classifier's captured step, mlp_recompute None / gelu / mlp
#   upernet   UperNet S (graphs on, as it ships) against mmseg's Swin-T config (pipeline)
#   accuracy  RetinaNet S, graphs on / off, over SEEDS (default "0 1"): the spread
#             between seeds of one variant is the noise the two variants are judged by
#   det       RetinaNet S and Mask R-CNN S against mmdet's Swin-T configs, passes of
#             DET_ITERS (default 120) iterations: the issue reads each epoch's later part,
#             and a 40-iteration first pass is mostly the one-off captures and compiles
#   cp        with_cp on the largest stages (their blocks recomputed in the backward,
#             graph-capturable): trunk with stages [0] / [0, 1], then RetinaNet S and
#             Mask R-CNN S with with_cp=[CP] (default "0,1", what the configs ship since run 10) against Swin-T
#   scaling   Mask R-CNN S on 1 and 2 GPUs (needs nvidia-h200-x2)
#   ddp       the same with DDP settings: buffers not broadcast (mmengine broadcasts
#             them as soon as model_wrapper_cfg is given), gradients as bucket views,
#             then also a static graph (needs nvidia-h200-x2)
set -u
OUTD=${1:?usage: graph_checks.sh OUT_DIR [SECTION...]}
shift
mkdir -p "$OUTD"
TRUNK="python3 tools/benchmark.py trunk --arch small --shape 2 800 1216 --n-win 16 --amp fp16"
CLS="python3 tools/benchmark.py cls --arch small --batch 128 --amp bf16 --mode train --cuda-graph"
PIPE="python3 tools/benchmark.py pipeline --amp --iters ${ITERS:-40} --workers ${WORKERS:-8}"
for s in ${*:-tests trunk cls upernet accuracy}; do
    echo "== $s $(date +%T)"
    case $s in
    tests)
        timeout 240 python3 -m pytest -q -p no:warnings tests/test_shape_graphs.py \
            tests/test_linear.py tests/test_bra_backends.py -k "not cpu" ;;
    trunk)
        timeout 60 $TRUNK --cuda-graph
        timeout 60 $TRUNK --cuda-graph --mlp-recompute gelu
        timeout 60 $TRUNK --cuda-graph --mlp-recompute mlp
        timeout 60 $TRUNK --mmdet-swin ;;
    cls)
        timeout 60 $CLS
        timeout 60 $CLS --mlp-recompute gelu
        timeout 60 $CLS --mlp-recompute mlp ;;
    upernet)  # the seg configs replay the backbone as graphs (cuda_graph=True)
        timeout 300 $PIPE configs/seg/upernet_biformer_s.py \
            --vs mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py \
            --work-dir work_dirs/pipe_seg --out "$OUTD/upernet.json" ;;
    accuracy)
        for seed in ${SEEDS:-0 1}; do
            for graphs in True False; do
                # LIMIT: a fresh machine's first capture compiles the Triton kernels (~30 s)
                EXTRA_OPTS="randomness.seed=$seed custom_hooks.0.cuda_graph=$graphs" \
                    LIMIT=${LIMIT:-100} DET_EPOCHS=${DET_EPOCHS:-3} timeout 160 \
                    bash tools/gpu_tasks.sh "$OUTD/acc_${graphs}_$seed" retinanet
                rm -rf "$OUTD/acc_${graphs}_$seed/retinanet"  # checkpoints
            done
        done ;;
    det)
        ITERS=${DET_ITERS:-120} timeout 580 bash .dev_scripts/pipeline_runs.sh "$OUTD" \
            retinanet maskrcnn ;;
    cp)
        timeout 60 $TRUNK --cuda-graph --mlp-recompute mlp --with-cp 0
        timeout 60 $TRUNK --cuda-graph --mlp-recompute mlp --with-cp 0 1
        for det in retinanet maskrcnn; do  # --cfg-options would reach Swin-T's config too
            printf "_base_ = '%s'\nmodel = dict(backbone=dict(with_cp=[%s]))\n" \
                "$PWD/configs/det/${det}_biformer_s.py" "${CP:-0,1}" > "$OUTD/${det}_cp.py"
        done
        timeout 500 $PIPE --iters ${DET_ITERS:-120} "$OUTD/retinanet_cp.py" \
            --vs mmdet::swin/retinanet_swin-t-p4-w7_fpn_1x_coco.py \
            --work-dir work_dirs/pipe_det --out "$OUTD/retinanet_cp.json"
        timeout 500 $PIPE --iters ${DET_ITERS:-120} "$OUTD/maskrcnn_cp.py" \
            --vs mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py \
            --work-dir work_dirs/pipe_det --out "$OUTD/maskrcnn_cp.json" ;;
    scaling)
        timeout 540 $PIPE --iters ${DET_ITERS:-120} configs/det/maskrcnn_biformer_s.py \
            --gpus 1 2 --work-dir work_dirs/pipe_det --out "$OUTD/scaling.json" ;;
    ddp)
        W=model_wrapper_cfg
        for extra in "" "$W.static_graph=True"; do
            timeout 280 $PIPE --iters ${DET_ITERS:-120} configs/det/maskrcnn_biformer_s.py \
                --gpus 2 --work-dir work_dirs/pipe_det --cfg-options $W.broadcast_buffers=False \
                $W.gradient_as_bucket_view=True $extra
        done ;;
    *) echo "unknown section $s"; exit 2 ;;
    esac > "$OUTD/$s.txt" 2>&1
    tail -4 "$OUTD/$s.txt"
done
