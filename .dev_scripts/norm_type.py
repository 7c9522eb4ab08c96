"""Build the Runner for CONFIG and print the type of the BiFormer stem's norm layer on
rank 0: SyncBatchNorm under DDP (torchrun), BatchNorm2d in one process.
    torchrun --nproc_per_node=2 .dev_scripts/norm_type.py CONFIG [key=value ...]"""
import argparse
import os

import mmbiformer.openmmlab  # noqa: E402,F401  (stack fixes, registrations)
from mmengine.config import DictAction  # noqa: E402
from mmengine.dist import get_rank  # noqa: E402

from mmbiformer.utils.launch import build_runner, load_config  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument('config')
parser.add_argument('options', nargs='*', action=DictAction)
args = parser.parse_args()
cfg = load_config(args.config, args.options, '/tmp/norm_type')
cfg.launcher = 'pytorch' if 'WORLD_SIZE' in os.environ else 'none'
runner = build_runner(cfg)
model = getattr(runner.model, 'module', runner.model)
if get_rank() == 0:
    print('stem norm:', type(model.backbone.downsample_layers[0][1]).__name__,
          '| model wrapper:', type(runner.model).__name__)
