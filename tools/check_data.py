#!/usr/bin/env python
"""Check a config's data before a run: every path its loaders read, and with
``--check-images`` every image and label map decoded.

    python tools/check_data.py configs/seg/upernet_biformer_s.py [--check-images]
        [--loaders train_dataloader val_dataloader test_dataloader] [--cfg-options ...]

Exits 0 when all is readable; otherwise names each missing path or unreadable file with
the config key it is read through (``tools/train.py --check-images`` runs the same
decode check before training).
"""
import argparse
import sys

import mmbiformer.openmmlab  # noqa: F401  (stack fixes, registrations)
from mmbiformer.data import check_images
from mmbiformer.utils.cfg_options import ConfigOptions
from mmbiformer.errors import UserError
from mmbiformer.utils.data_checks import check_data
from mmbiformer.utils.launch import load_config

LOADERS = ['train_dataloader', 'val_dataloader', 'test_dataloader']


def main(argv=None):
    parser = argparse.ArgumentParser(description='Check the data a config reads')
    parser.add_argument('config')
    parser.add_argument('--check-images', action='store_true',
                        help='decode every image and label map (slow on full datasets)')
    parser.add_argument('--loaders', nargs='+', default=LOADERS, choices=LOADERS)
    parser.add_argument('--cfg-options', nargs='+', action=ConfigOptions)
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    loaders = [name for name in args.loaders if cfg.get(name)]
    check_data(cfg, loaders)
    print(f'paths: all present ({", ".join(loaders)})')
    if args.check_images:
        n = check_images(cfg, loaders)
        print(f'images and label maps: all {n} decode')


if __name__ == '__main__':
    try:
        main()
    except UserError as e:
        sys.exit(f'error: {e}')
