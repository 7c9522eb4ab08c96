# Helpers shared by the GPU run scripts (sourced): those of tools/gpu_tasks.sh.
source "$(dirname "${BASH_SOURCE[0]}")/../tools/run_lib.sh"
