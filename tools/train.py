#!/usr/bin/env python
"""Train any config of configs/{cls,det,seg} with mmengine's Runner.

    python tools/train.py configs/det/maskrcnn_biformer_s.py [--amp] [--resume [CKPT]]
    tools/dist_train.sh configs/det/maskrcnn_biformer_s.py 8
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(__file__), '..'))
import mmbiformer  # noqa: E402,F401  (stack fixes before any toolbox import)
from mmbiformer.utils.launch import (UserError, build_runner,  # noqa: E402
                                     check_data, fit_to_device, load_config,
                                     parse_tool_args, setup_cpu_distributed)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from CKPT, or (no value) from the latest '
                        'checkpoint in the work dir')
    parser.add_argument('--amp', action='store_true', help='mixed precision (fp16)')
    return parse_tool_args(parser, argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options, args.work_dir)
    cfg.launcher = args.launcher
    if args.amp:
        wrapper = cfg.optim_wrapper
        if wrapper.get('type', 'OptimWrapper') == 'OptimWrapper':
            wrapper.type = 'AmpOptimWrapper'
            wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    fit_to_device(cfg)
    check_data(cfg, ['train_dataloader', 'val_dataloader'])
    setup_cpu_distributed(cfg, args.launcher)
    build_runner(cfg).train()


if __name__ == '__main__':
    try:
        main()
    except UserError as e:
        sys.exit(f'error: {e}')
