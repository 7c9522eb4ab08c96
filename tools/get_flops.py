#!/usr/bin/env python
"""Parameters and FLOPs of a config's model, or of a BiFormer backbone, with Bi-Level
Routing Attention counted (routing, token attention, LCE).

    python tools/get_flops.py configs/cls/biformer_s_in1k.py            # 224x224
    python tools/get_flops.py configs/det/retinanet_biformer_s.py --shape 800 1280
    python tools/get_flops.py --arch small --shape 224 224              # backbone only

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
from mmbiformer.utils.launch import UserError, build_model, load_config


def build_from_config(path: str):
    cfg = load_config(path)
    cfg.model.pop('init_cfg', None)
    if cfg.model.get('backbone'):
        cfg.model.backbone.init_cfg = None  # counting needs no weights
    return build_model(cfg), cfg


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
    parser.add_argument('--shape', type=int, nargs=2, default=(224, 224), metavar=('H', 'W'))
    args = parser.parse_args(argv)
    if bool(args.config) == bool(args.arch):
        parser.error('give a CONFIG or --arch, not both')
    x = torch.randn(1, 3, *args.shape)
    try:
        if args.arch:
            from mmbiformer.models import BiFormer
            model = BiFormer(args.arch, n_win=args.n_win).eval()
            macs, scope, name = count_macs(model, x), 'backbone', f'BiFormer-{args.arch}'
        else:
            model, _ = build_from_config(args.config)
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
