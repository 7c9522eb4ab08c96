"""Pre-flight of dist_train.sh / dist_test.sh: config exists, enough GPUs on this node.

Without any GPU, one process runs on the CPU (gloo); more are refused.
"""
import os.path as osp
import sys


def main(config: str, gpus: str) -> int:
    if not osp.isfile(config):
        print(f'error: config file not found: {config}', file=sys.stderr)
        return 2
    if not gpus.isdigit() or int(gpus) < 1:
        print(f'error: GPUS must be a positive integer, got {gpus!r}', file=sys.stderr)
        return 2
    import torch
    wanted, present = int(gpus), torch.cuda.device_count()
    # The count is the launcher's second argument (dist_train.sh CONFIG GPUS ...).
    if present == 0 and wanted > 1:
        print(f'error: asked for {wanted} GPUs but this machine has none; pass 1 as the '
              f'GPU count (e.g. tools/dist_train.sh {config} 1) to run one process on the '
              f'CPU.', file=sys.stderr)
        return 2
    if present and wanted > present:
        print(f'error: asked for {wanted} GPUs but this node has {present}; pass at most '
              f'{present} as the GPU count (or NNODES/NODE_RANK for several nodes).',
              file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main(*sys.argv[1:3]))
