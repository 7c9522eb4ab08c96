#!/usr/bin/env python
"""Compile BiFormer's Triton kernels for configs ahead of time (on a GPU machine), so
that the first iterations of training and testing there do not wait for compiles.

    python tools/compile_kernels.py configs/det/maskrcnn_biformer_s.py \
        configs/seg/upernet_biformer_s.py

Each config's backbone runs over the input sizes its test and training pipelines make
(``mmbiformer/engine/kernel_warmup.py``); Triton keeps what it compiles in its cache on
this machine (``~/.triton/cache``, or ``TRITON_CACHE_DIR``), for every later process.
``--cfg-options`` applies to every config, as the jobs will run them. Where a config's
``BackboneRuntimeHook`` replays inference graphs, the kernels those graphs record are
compiled too.
"""
import argparse
import os.path as osp
import sys

import torch

import mmbiformer.openmmlab  # noqa: F401  (stack fixes before any toolbox import)
from mmbiformer.errors import ArgumentError
from mmbiformer.utils.cfg_options import ConfigOptions
from mmbiformer.engine.backbone_runtime import BackboneRuntime
from mmbiformer.engine.backbone_runtime_hook import configured_runtime
from mmbiformer.engine.kernel_warmup import plan, warm_up
from mmbiformer.errors import UserError
from mmbiformer.utils.launch import build_model, load_config


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('configs', nargs='+', help='config files')
    parser.add_argument('--cfg-options', nargs='+', action=ConfigOptions,
                        help='overrides for every config, key=value')
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit('error: compile_kernels.py compiles GPU kernels: run it on a machine '
                 'with CUDA')
    for path in args.configs:
        cfg = load_config(path, args.cfg_options)
        cfg.model.get('backbone', {})['init_cfg'] = None  # weights do not matter here
        backbone = build_model(cfg).backbone.cuda()
        BackboneRuntime(**configured_runtime(cfg)).attach(backbone)
        print(f'{osp.relpath(path)}: ', end='', flush=True)
        warm_up(backbone, plan(cfg))
        del backbone
        torch.cuda.empty_cache()


if __name__ == '__main__':
    try:
        main()
    except (UserError, ArgumentError) as e:
        sys.exit(f'error: {e}')
