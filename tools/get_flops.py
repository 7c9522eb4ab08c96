#!/usr/bin/env python
"""Parameters and FLOPs of a config's model, or of a BiFormer backbone, with Bi-Level
Routing Attention counted (routing, token attention, LCE).

    python tools/get_flops.py configs/cls/biformer_s_in1k.py            # 224x224
    python tools/get_flops.py configs/det/retinanet_biformer_s.py       # 1280x800
    python tools/get_flops.py configs/seg/upernet_biformer_s.py         # its crop, 512x512
    python tools/get_flops.py --arch small --shape 224 224              # backbone only

The default input is the one each toolbox reports FLOPs at: 224x224 for
classification, 1280x800 for detection (mmdet's convention, the Swin and BiFormer
papers' tables), the training crop for segmentation; ``--shape H W`` sets another.

Convention (the paper's): one multiply-accumulate = one FLOP. The table splits the
count by kind; "without attention" is what operator-tracing counters report when the
attention runs in a fused kernel. See mmbiformer/analysis/flops.py for what is counted.
"""
import argparse
import sys

import torch

import mmbiformer.openmmlab  # noqa: F401  (stack fixes, registrations)
from mmbiformer.errors import ArgumentError
from mmbiformer.analysis.flops import KINDS, count_macs, count_params
from mmbiformer.errors import UserError
from mmbiformer.utils.launch import build_model, load_config


def build_from_config(path: str):
    cfg = load_config(path)
    cfg.model.pop('init_cfg', None)
    if cfg.model.get('backbone'):
        cfg.model.backbone.init_cfg = None  # counting needs no weights
    return build_model(cfg), cfg


def default_shape(cfg) -> tuple:
    """(H, W) at which the config's toolbox reports FLOPs."""
    scope = cfg.get('default_scope')
    if scope == 'mmdet':
        return 1280, 800
    if scope == 'mmseg':
        size = (cfg.model.get('data_preprocessor') or {}).get('size') or cfg.get('crop_size')
        if isinstance(size, (tuple, list)) and len(size) == 2:
            return tuple(size)
        return 512, 512
    return 224, 224


def measure(model, x):
    """MACs of the whole model, or of backbone + neck where the head needs more than
    an image (two-stage detectors need proposals)."""
    try:
        return count_macs(model, x, mode='tensor'), 'whole model'
    except Exception:  # noqa: BLE001  (any head that cannot run on a bare tensor)
        return count_macs(model, x, forward=model.extract_feat), 'backbone + neck (head not counted)'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', nargs='?', help='config file (else --arch)')
    parser.add_argument('--arch', choices=['tiny', 'small', 'base'],
                        help='count a BiFormer backbone alone')
    parser.add_argument('--n-win', type=int, default=7, help='with --arch')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help="input size (default: the toolbox's, see above)")
    args = parser.parse_args(argv)
    if bool(args.config) == bool(args.arch):
        parser.error('give a CONFIG or --arch, not both')
    try:
        if args.arch:
            from mmbiformer.models import BiFormer
            args.shape = args.shape or (224, 224)
            x = torch.randn(1, 3, *args.shape)
            model = BiFormer(args.arch, n_win=args.n_win).eval()
            macs, scope, name = count_macs(model, x), 'backbone', f'BiFormer-{args.arch}'
        else:
            model, cfg = build_from_config(args.config)
            args.shape = args.shape or default_shape(cfg)
            x = torch.randn(1, 3, *args.shape)
            (macs, scope), name = measure(model, x), args.config
    except (UserError, ArgumentError) as e:
        sys.exit(f'error: {e}')
    total = sum(macs.values())
    print(f'{name}, input 1x3x{args.shape[0]}x{args.shape[1]}, {scope}')
    print(f'params {count_params(model) / 1e6:.2f} M')
    for kind in KINDS:
        print(f'  {kind:<10} {macs[kind] / 1e9:8.3f} G')
    print(f'FLOPs {total / 1e9:.3f} G (1 multiply-add = 1 FLOP); without attention '
          f'{(total - macs["attention"] - macs["routing"]) / 1e9:.3f} G')


if __name__ == '__main__':
    main()
