#!/usr/bin/env bash
# Slurm:  [GPUS=8 GPUS_PER_NODE=8 CPUS_PER_TASK=5 SRUN_ARGS=...] \
#         tools/slurm_train.sh PARTITION JOB_NAME CONFIG [WORK_DIR] [train.py args]
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG [WORK_DIR] [train.py args...]" >&2; exit 2
fi
source "$(dirname "$0")/launch_lib.sh"
PARTITION=$1 JOB_NAME=$2 CONFIG=$3
shift 3
WORK_DIR_ARGS=()
if [ $# -gt 0 ] && [[ $1 != -* ]]; then WORK_DIR_ARGS=(--work-dir "$1"); shift; fi
srun_tool "$PARTITION" "$JOB_NAME" train.py "$CONFIG" "${WORK_DIR_ARGS[@]}" "$@"
