#!/usr/bin/env bash
# Distributed training with torchrun:  tools/dist_train.sh CONFIG GPUS [train.py args]
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT (defaults 1, 0, 127.0.0.1, 29500).
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG GPUS [train.py args...]" >&2; exit 2
fi
source "$(dirname "$0")/launch_lib.sh"
CONFIG=$1 GPUS=$2
shift 2
torchrun_tool "$GPUS" "$CONFIG" train.py "$CONFIG" "$@"
