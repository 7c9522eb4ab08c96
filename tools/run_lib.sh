# Helpers for scripts that train on generated data (sourced by tools/gpu_tasks.sh and
# the maintainers' .dev_scripts).
WORKERS="train_dataloader.num_workers=6 train_dataloader.persistent_workers=True"

opts() {  # short-run overrides: task data_root H W length batch
    python3 "$(dirname "${BASH_SOURCE[0]}")/short_run_options.py" "$@"
}

summary() {  # log: last train lines, validation / test metrics
    grep -E "\((train)\) +\[" "$1" | tail -2 | sed -E 's/.*(Epoch|Iter)/\1/' | cut -c1-230 || true
    grep -E "\((val)\) +\[[0-9]+\]\[[0-9]+/[0-9]+\] +(accuracy|coco|aAcc)|Iter\(val\).*aAcc|^metrics:" "$1" \
        | tail -2 | cut -c1-300 || true
}
