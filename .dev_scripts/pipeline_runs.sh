#!/usr/bin/env bash
# Whole-config training iterations, ours against the toolboxes' own Swin-T configs of
# the same detector / segmentor, on one GPU and generated data (docs/benchmark_history.md,
# "Pipeline"). Each pair is one `tools/benchmark.py pipeline` run.
#   bash .dev_scripts/pipeline_runs.sh OUT_DIR [SECTION...]
# SECTION: maskrcnn, retinanet, upernet, newsize (default: all).
# ITERS (default 40): iterations per pass; WORKERS (default 8): loader workers.
set -u
OUTD=${1:?usage: pipeline_runs.sh OUT_DIR [SECTION...]}
shift
mkdir -p "$OUTD"
P="python3 tools/benchmark.py pipeline --amp --iters ${ITERS:-40} --workers ${WORKERS:-8}"
for s in ${*:-maskrcnn retinanet upernet newsize}; do
    case $s in
    maskrcnn)
        $P configs/det/maskrcnn_biformer_s.py --vs mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py \
            --work-dir work_dirs/pipe_det --out "$OUTD/maskrcnn.json" ;;
    retinanet)
        $P configs/det/retinanet_biformer_s.py --vs mmdet::swin/retinanet_swin-t-p4-w7_fpn_1x_coco.py \
            --work-dir work_dirs/pipe_det --out "$OUTD/retinanet.json" ;;
    upernet)
        $P configs/seg/upernet_biformer_s.py \
            --vs mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py \
            --work-dir work_dirs/pipe_seg --out "$OUTD/upernet.json" ;;
    newsize)  # the trunk alone, fp16 autocast as the configs' AmpOptimWrapper
        python3 tools/benchmark.py trunk --arch small --shape 2 800 1216 --n-win 16 \
            --amp fp16 --iters 10 --new-sizes 10 ;;
    *) echo "unknown section $s"; exit 2 ;;
    esac
done
