#!/usr/bin/env bash
# Distributed training with torchrun:  tools/dist_train.sh CONFIG GPUS [train.py args]
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT (defaults 1, 0, 127.0.0.1, 29500).
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG GPUS [train.py args...]" >&2; exit 2
fi
CONFIG=$1
GPUS=$2
shift 2
DIR="$(cd "$(dirname "$0")" && pwd)"
python3 "$DIR/check_gpus.py" "$CONFIG" "$GPUS" || exit $?
export PYTHONPATH="$DIR/..${PYTHONPATH:+:$PYTHONPATH}"
exec python3 -m torch.distributed.run \
    --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${PORT:-29500}" \
    --nproc_per_node="$GPUS" \
    "$DIR/train.py" "$CONFIG" --launcher pytorch "$@"
