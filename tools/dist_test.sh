#!/usr/bin/env bash
# Distributed testing with torchrun:  tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py args]
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT (defaults 1, 0, 127.0.0.1, 29500).
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 CONFIG CHECKPOINT GPUS [test.py args...]" >&2; exit 2
fi
source "$(dirname "$0")/launch_lib.sh"
CONFIG=$1 CHECKPOINT=$2 GPUS=$3
shift 3
torchrun_tool "$GPUS" "$CONFIG" test.py "$CONFIG" "$CHECKPOINT" "$@"
