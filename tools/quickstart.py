#!/usr/bin/env python
"""The first run: generate data if missing, train with tools/dist_train.sh, evaluate.

    python tools/quickstart.py                 # Mask R-CNN BiFormer-T on synthetic COCO
    python tools/quickstart.py --task seg      # UperNet on synthetic ADE20K
    python tools/quickstart.py --task cls --gpus 1 --epochs 4

Runs a real config of configs/ through the real launchers; only the data root, image
size and schedule are overridden (--cfg-options, printed before running).
"""
import argparse
import os.path as osp
import shlex
import subprocess

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
from mmbiformer.testing import MAKERS
from mmbiformer.utils.short_run import TASKS, as_cli, short_run_options


def run(cmd):
    print('+ ' + ' '.join(shlex.quote(c) for c in cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--task', choices=sorted(TASKS), default='det')
    parser.add_argument('--gpus', type=int, default=1, help='processes (GPUs; 1 on CPU)')
    parser.add_argument('--epochs', type=int, default=3,
                        help='epochs (cls/det) or x4 iterations (seg)')
    parser.add_argument('--size', type=int, nargs=2, default=(192, 256), metavar=('H', 'W'))
    parser.add_argument('--num-train', type=int, default=24)
    parser.add_argument('--config', help='another config of the same task (default: the '
                        'T config of the task)')
    parser.add_argument('--data-root', help='default: data/synthetic/<dataset>')
    parser.add_argument('--work-dir', help='default: work_dirs/quickstart_<task>')
    parser.add_argument('--seed', type=int, default=0,
                        help='random seed (flips, crops, drop path, initial weights): the '
                        'same seed gives the same metrics on the same machine')
    args = parser.parse_args(argv)

    config, kind = TASKS[args.task]
    config = args.config or config
    data_root = args.data_root or osp.join('data', 'synthetic', kind)
    work_dir = args.work_dir or osp.join('work_dirs', f'quickstart_{args.task}')
    if not osp.isdir(osp.join(ROOT, data_root)):
        per_class = kind == 'imagenet'
        MAKERS[kind](osp.join(ROOT, data_root),
                     num_train=max(1, args.num_train // 4) if per_class else args.num_train,
                     num_val=2 if per_class else 8, size=tuple(args.size))
        print(f'generated {kind} data in {data_root}')
    opts = as_cli(short_run_options(args.task, data_root, tuple(args.size), args.epochs))
    opts.append(f'randomness.seed={args.seed}')
    # A rerun starts again: an earlier run's checkpoints move to previous-<time>/.
    run(['bash', 'tools/dist_train.sh', config, str(args.gpus), '--work-dir', work_dir,
         '--start-over', '--cfg-options', *opts])
    last = osp.join(ROOT, work_dir, 'last_checkpoint')
    with open(last) as f:
        checkpoint = f.read().strip()
    run(['bash', 'tools/dist_test.sh', config, checkpoint, str(args.gpus), '--work-dir',
         work_dir, '--cfg-options', *opts])
    # The Runner dumped the config with every override above (data paths, test scale,
    # score threshold) into the work dir: with it alone the metrics are reproduced.
    dumped = osp.join(work_dir, osp.basename(config))
    print(f'\nTo evaluate this checkpoint again (same metrics):\n'
          f'  python3 tools/test.py {dumped} {checkpoint} --work-dir {work_dir}')


if __name__ == '__main__':
    main()
