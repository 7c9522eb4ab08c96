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
    if present == 0 and wanted > 1:
        print(f'error: asked for {wanted} GPUs but this machine has none; use GPUS=1 '
              f'to run one process on the CPU.', file=sys.stderr)
        return 2
    if present and wanted > present:
        print(f'error: asked for {wanted} GPUs but this node has {present}; use '
              f'GPUS<={present} (or NNODES/NODE_RANK for several nodes).', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main(*sys.argv[1:3]))
