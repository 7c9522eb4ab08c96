#!/usr/bin/env python
"""Where BiFormer looks: the regions a query routes to and its token attention there.

    python tools/analysis_tools/visualize_routing.py CONFIG CHECKPOINT IMAGE \\
        --query 120 80 --query 300 200 --stage 2 --block 0 --out routing.png
    python tools/analysis_tools/visualize_routing.py CONFIG CHECKPOINT IMAGE --stats \\
        --out routing_stats.png

CHECKPOINT: a file, a URL or a model-zoo name. Each ``--query X Y`` (image pixels) is
one panel: the region grid, the query and its region (dashed), its top-k routed regions
outlined and ranked by routing weight, and its token attention (mean over heads) as a
heat map over them. ``--stats`` instead draws, per stage, how often each region is
routed to over all query regions, and prints each stage's mean routing entropy.
Any image size works (the backbone's auto-padding). Only the backbone runs.
"""
import argparse
import sys

import mmbiformer.openmmlab  # noqa: F401  (stack fixes, registrations)
from mmbiformer.errors import ArgumentError
from mmbiformer.weights.checkpoint import CheckpointError, check_model_checkpoint
from mmbiformer.errors import UserError
from mmbiformer.weights.checkpoint_refs import readable_checkpoint
from mmbiformer.utils.images import read_image, shrink_to_side
from mmbiformer.utils.launch import build_model, load_config, prepare_output
from mmbiformer.analysis.routing import RoutingError
from mmbiformer.utils.cfg_options import ConfigOptions

IMAGENET_MEAN, IMAGENET_STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)


def load_image(path: str, cfg, max_side: int = 0):
    """(RGB uint8 HxWx3, normalised 1x3xHxW tensor, scale, (H, W) as read) with the
    config's mean/std; an image with a side above ``max_side`` is resized down by
    ``scale`` (< 1)."""
    import torch
    rgb = read_image(path)[..., ::-1].copy()
    h, w = rgb.shape[:2]
    rgb, scale = shrink_to_side(rgb, max_side)
    if scale < 1:
        print(f'{path}: {w}x{h} resized to {rgb.shape[1]}x{rgb.shape[0]} '
              f'(--max-side {max_side}): '
              f'the routing capture keeps every attention matrix, whose memory grows '
              f'with the square of the region size; pass a larger --max-side to keep '
              f'more detail')
    pre = cfg.model.get('data_preprocessor') or {}
    mean, std = pre.get('mean', IMAGENET_MEAN), pre.get('std', IMAGENET_STD)
    x = torch.from_numpy(rgb).float().permute(2, 0, 1)[None]
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    return rgb, x, scale, (h, w)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('checkpoint', help='file, URL or model-zoo name')
    parser.add_argument('image')
    parser.add_argument('--query', nargs=2, type=int, action='append', metavar=('X', 'Y'),
                        help='query position in image pixels (repeat for more panels; '
                        'default: the image centre)')
    parser.add_argument('--stage', type=int, default=2, help='stage of the block (0-2 '
                        'route; 3 is global attention)')
    parser.add_argument('--block', type=int, default=0, help='block within the stage')
    parser.add_argument('--stats', action='store_true',
                        help='routing frequency per region and entropy, per stage')
    parser.add_argument('--out', default='routing.png', help='PNG to write')
    parser.add_argument('--max-side', type=int, default=1024,
                        help='resize larger images down to this side first (memory of the '
                        'capture; 0: never)')
    parser.add_argument('--allow-partial', action='store_true',
                        help='use a checkpoint that leaves model weights unloaded')
    parser.add_argument('--cfg-options', nargs='+', action=ConfigOptions)
    args = parser.parse_args(argv)

    import torch
    from mmengine.runner import load_checkpoint

    from mmbiformer.analysis.routing import (bra_blocks, capture_routing, check_block,
                                             find_backbone)
    from mmbiformer.analysis.routing_figure import (query_figure, stage_entropies,
                                                    stats_figure)
    cfg = load_config(args.config, args.cfg_options)
    rgb, x, scale, (height, width) = load_image(args.image, cfg, args.max_side)
    prepare_output(args.out)  # before the model runs
    model = build_model(cfg)
    backbone = find_backbone(model)
    path = readable_checkpoint(args.checkpoint)
    check_model_checkpoint(model, path, args.allow_partial)
    load_checkpoint(model, path, map_location='cpu', logger='silent')
    for bra in bra_blocks(backbone).values():
        bra.auto_pad = True  # any image size, as dense models run (same weights)
    if args.stats:
        with capture_routing(backbone) as records, torch.no_grad():
            backbone(x)
        fig = stats_figure(rgb, list(records.values()))
        for stage, blocks, entropy in stage_entropies(list(records.values())):
            print(f'stage {stage}: {blocks} BRA blocks, mean routing entropy '
                  f'{entropy:.4f} nats')
    else:
        check_block(backbone, args.stage, args.block)
        queries = [tuple(q) for q in (args.query or [(width // 2, height // 2)])]
        for qx, qy in queries:
            if not (0 <= qx < width and 0 <= qy < height):
                raise UserError(f'--query {qx} {qy} is outside the image ({width}x{height} '
                                f'pixels: x in 0..{width - 1}, y in 0..{height - 1})')
        # Image pixels to the (possibly resized) picture the model sees.
        queries = [(min(int(qx * scale), rgb.shape[1] - 1), min(int(qy * scale),
                                                                rgb.shape[0] - 1))
                   for qx, qy in queries]
        with capture_routing(backbone, queries, [(args.stage, args.block)]) as records, \
                torch.no_grad():
            backbone(x)
        fig = query_figure(rgb, records[(args.stage, args.block)], asked=queries)
    fig.savefig(args.out, dpi=110)
    print(f'wrote {args.out}')


def cli(argv=None):
    """:func:`main` with the errors a user can fix printed without a traceback."""
    try:
        main(argv)
    except (UserError, ArgumentError, CheckpointError, RoutingError) as e:
        sys.exit(f'error: {e}')


if __name__ == '__main__':
    cli()
