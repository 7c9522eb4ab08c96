# Shared by tools/{dist,slurm}_{train,test}.sh (sourced): start a tool under torchrun
# or srun with the project on PYTHONPATH.
LAUNCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="$LAUNCH_DIR/..${PYTHONPATH:+:$PYTHONPATH}"

torchrun_tool() {  # GPUS CONFIG TOOL.py TOOL_ARGS...: CONFIG is checked against GPUS
    local gpus=$1 config=$2 tool=$3
    shift 3
    python3 "$LAUNCH_DIR/check_gpus.py" "$config" "$gpus" || exit $?
    if [ "$gpus" -gt 1 ]; then
        # One thread per process unless set: what torchrun and mmengine set anyway for
        # several processes, each with a warning (8 lines a launch). Set them to choose.
        export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
    fi
    exec python3 -m torch.distributed.run \
        --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
        --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${PORT:-29500}" \
        --nproc_per_node="$gpus" \
        "$LAUNCH_DIR/$tool" "$@" --launcher pytorch
}

srun_tool() {  # PARTITION JOB_NAME TOOL.py TOOL_ARGS...
    local partition=$1 job=$2 tool=$3
    shift 3
    local gpus=${GPUS:-8} per_node=${GPUS_PER_NODE:-8}
    exec srun -p "$partition" --job-name="$job" --gres=gpu:"$per_node" \
        --ntasks="$gpus" --ntasks-per-node="$per_node" \
        --cpus-per-task="${CPUS_PER_TASK:-5}" --kill-on-bad-exit=1 ${SRUN_ARGS:-} \
        python3 -u "$LAUNCH_DIR/$tool" "$@" --launcher slurm
}
