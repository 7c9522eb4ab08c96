#!/usr/bin/env python
"""Write a small, learnable dataset in the real COCO / ADE20K / ImageNet layout.

    python tools/generate_data.py coco data/coco
    python tools/generate_data.py ade20k data/ade --num-train 64 --size 512 512
    python tools/generate_data.py imagenet data/imagenet --num-classes 8
"""
import argparse

from mmbiformer.testing import MAKERS, MAX_CLASSES


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('kind', choices=sorted(MAKERS))
    parser.add_argument('out', help='data root to write (e.g. data/coco)')
    parser.add_argument('--num-train', type=int, default=None,
                        help='train images (ImageNet: per class)')
    parser.add_argument('--num-val', type=int, default=None,
                        help='val images (ImageNet: per class)')
    parser.add_argument('--size', type=int, nargs=2, metavar=('H', 'W'), default=None,
                        help='nominal image size; COCO/ADE20K vary the aspect around it')
    parser.add_argument('--num-classes', type=int, default=4,
                        help=f'classes (1..{MAX_CLASSES})')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--small-objects', action='store_true',
                        help='coco: up to 12 objects an image, 3 in 4 of them small '
                        '(COCO area < 32x32), so that AP_s can be read')
    args = parser.parse_args(argv)
    kwargs = dict(num_classes=args.num_classes, seed=args.seed)
    if args.small_objects:
        if args.kind != 'coco':
            parser.error('--small-objects is a coco option')
        kwargs['small_objects'] = True
    for key in ('num_train', 'num_val', 'size'):
        if getattr(args, key) is not None:
            kwargs[key] = tuple(args.size) if key == 'size' else getattr(args, key)
    out = MAKERS[args.kind](args.out, **kwargs)
    print(f'wrote {args.kind} data to {out}')


if __name__ == '__main__':
    main()
