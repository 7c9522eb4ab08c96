#!/usr/bin/env python
"""Convert an official BiFormer ImageNet checkpoint to mmbiformer's layout.

    python tools/model_converters/biformer_to_mm.py biformer_small_in1k.pth biformer-s_in1k.pth

The result (``state_dict`` with ``backbone.`` / ``head.fc.`` keys) loads in
``tools/test.py configs/cls/biformer_s_in1k.py DST``,
``mmpretrain.apis.get_model(config, pretrained=DST)`` and as a backbone ``Pretrained``.
"""
import argparse
import sys

from mmbiformer.weights.checkpoint import CheckpointError
from mmbiformer.weights.converters import convert_official_file


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src', help='official checkpoint (weights under "model")')
    parser.add_argument('dst', help='output file')
    args = parser.parse_args(argv)
    try:
        convert_official_file(args.src, args.dst)
    except (CheckpointError, FileNotFoundError) as e:
        sys.exit(f'error: {e}')
    print(f'converted {args.src} -> {args.dst}')


if __name__ == '__main__':
    main()
