#!/usr/bin/env bash
# Where Mask R-CNN BiFormer-S's time goes on 2 GPUs (docs/gpu_runs.md): NCCL all-reduce
# speed and transport; 1 GPU alone; two independent 1-GPU runs side by side (host
# contention); DDP; DDP with a profiler (per-rank CPU-side top ops). GPU use is sampled
# with nvidia-smi throughout.
#   bash .dev_scripts/ddp_diag.sh OUT_DIR [N_TRAIN]
set -u
OUTD=${1:?usage: ddp_diag.sh OUT_DIR [N_TRAIN]}
NTRAIN=${2:-96}
source "$(dirname "$0")/lib.sh"
mkdir -p "$OUTD"
DATA=data/g_coco$NTRAIN
[ -d $DATA ] || python3 tools/generate_data.py coco $DATA --num-train $NTRAIN --num-val 4 --size 800 1216 >/dev/null
CFG=configs/det/maskrcnn_biformer_s.py
OPTS="$(opts det $DATA 800 1216 1 2) train_cfg.val_interval=9 default_hooks.checkpoint.interval=9"
NCCL_DEBUG=INFO PORT=29511 timeout 60 python3 -m torch.distributed.run --nproc_per_node=2 \
    --master_port=29511 .dev_scripts/allreduce_bw.py > "$OUTD/allreduce.log" 2>&1
grep -E "all_reduce|via (P2P|SHM|NET)|NVLS|Channel 00" "$OUTD/allreduce.log" | sort -u | head -6
train() {  # name gpus [env...]: logs to OUT/name.log, GPU use to OUT/name.smi
    local name=$1 gpus=$2; shift 2
    nvidia-smi --query-gpu=index,utilization.gpu,memory.used --format=csv,noheader,nounits -l 1 > "$OUTD/$name.smi" 2>&1 &
    local smi=$!
    env "$@" PORT=$((29600 + RANDOM % 300)) timeout ${LIMIT:-120} bash tools/dist_train.sh $CFG $gpus \
        --amp --work-dir "$OUTD/$name" --cfg-options $OPTS $WORKERS ${EXTRA:-} > "$OUTD/$name.log" 2>&1
    echo "== $name ($gpus GPU, $*): exit $?"; kill $smi; summary "$OUTD/$name.log"
    # utilization while a process holds the GPU (> 2 GiB), i.e. during training
    awk -F', ' '$3 > 2048 {u[$1] += $2; n[$1]++} END {for (g in u) printf "   GPU %s busy %.0f%% of %d s\n", g, u[g] / n[g], n[g]}' "$OUTD/$name.smi"
}
train g1 1 CUDA_VISIBLE_DEVICES=0
train pair0 1 CUDA_VISIBLE_DEVICES=0 & train pair1 1 CUDA_VISIBLE_DEVICES=1; wait
train ddp 2 NCCL_DEBUG=WARN
if [ -n "${PROFILE:-}" ]; then
    cat > /tmp/diag_profile.py <<PY
_base_ = '$(pwd)/$CFG'
custom_hooks = [dict(type='ProfilerHook', by_epoch=False, profile_times=16, activity_with_cuda=True,
                     schedule=dict(wait=10, warmup=2, active=4),
                     on_trace_ready=dict(type='log_trace', sort_by='self_cpu_time_total', row_limit=22))]
PY
    CFG=/tmp/diag_profile.py
    train ddp_prof 2 NCCL_DEBUG=WARN
    grep -A25 "^ *Name " "$OUTD/ddp_prof.log" | cut -c1-160 | head -60
fi
