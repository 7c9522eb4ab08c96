#!/usr/bin/env python
"""Export a BiFormer model to ONNX, optionally checked in onnxruntime.

    python tools/deploy/export_onnx.py configs/cls/biformer_s_in1k.py biformer-s_in1k \\
        --out biformer_s.onnx --dynamic --check image.jpg
    python tools/deploy/export_onnx.py configs/seg/upernet_biformer_s.py CKPT --out seg.onnx --dynamic
    python tools/deploy/export_onnx.py configs/det/maskrcnn_biformer_s.py CKPT --out feats.onnx

CHECKPOINT is a file or a model-zoo name. What is exported:
  classification: the whole classifier, image to logits;
  segmentation:   image to per-class logits at the input size (UperNet, Semantic FPN);
  detection:      backbone + neck, image to the FPN feature maps. The detection heads
                  (box decoding, NMS, RoIAlign) need mmdeploy's custom ONNX operators
                  and are not exported.
The input is float32 N x 3 x H x W with pixel values 0-255 in BGR order (as mmcv reads
images); the graph applies the config's channel flip, mean and std. With --dynamic one
file serves any batch, H and W, including sizes that are not multiples of the region
grid or of 32: padding and cropping are computed from the input size in the graph.
Needs onnx, onnxscript and onnxruntime: pip install -r requirements/deploy.txt
"""
import argparse
import sys
import time

import mmbiformer.openmmlab  # noqa: F401  (stack fixes, registrations)
from mmbiformer.errors import ArgumentError
from mmbiformer.weights.checkpoint import CheckpointError, check_model_checkpoint
from mmbiformer.deploy import OPSETS, ExportError, check_opset
from mmbiformer.errors import UserError
from mmbiformer.weights.checkpoint_refs import readable_checkpoint
from mmbiformer.utils.images import read_image
from mmbiformer.utils.launch import build_model, load_config, prepare_output
from mmbiformer.utils.cfg_options import ConfigOptions

DEFAULT_SHAPE = {'mmpretrain': (224, 224), 'mmseg': (512, 512), 'mmdet': (800, 1216)}


def exported_model(cfg, checkpoint: str, allow_partial: bool):
    """The config's model with the checkpoint's weights (checked against the model),
    eval mode, and its toolbox scope."""
    scope = cfg.get('default_scope')
    if scope not in DEFAULT_SHAPE:
        raise UserError(f'cannot export a model of default_scope {scope!r}: '
                        f'{sorted(DEFAULT_SHAPE)} only')
    if cfg.model.get('backbone'):
        cfg.model.backbone.init_cfg = None  # the checkpoint brings the weights
    model = build_model(cfg)
    if checkpoint:
        from mmengine.runner import load_checkpoint
        check_model_checkpoint(model, checkpoint, allow_partial=allow_partial)
        load_checkpoint(model, checkpoint, map_location='cpu', logger='silent')
    return model, scope


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('checkpoint', help="checkpoint file or model-zoo name; 'none': "
                        'random weights (to try the export)')
    parser.add_argument('--out', required=True, help='ONNX file to write')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='example input size (default: 224 224 classification, '
                        '512 512 segmentation, 800 1216 detection)')
    parser.add_argument('--dynamic', action='store_true',
                        help='batch, H and W dynamic (else fixed at 1 x --shape)')
    parser.add_argument('--opset', type=int, default=18,
                        help=f'ONNX opset, {OPSETS[0]}..{OPSETS[-1]} (default 18)')
    parser.add_argument('--fp16', action='store_true',
                        help='export in float16 (for GPU runtimes; the check then runs '
                        'in float16 too)')
    parser.add_argument('--check', metavar='IMAGE',
                        help='run the export in onnxruntime on this image (at its own '
                        'size with --dynamic, else resized to --shape) and print the '
                        'largest difference from PyTorch')
    parser.add_argument('--latency', type=int, default=0, metavar='N',
                        help='also time N runs (median, after 3 warm-up runs) of the '
                        'export in onnxruntime (CPU) and of PyTorch eager on the CPU, '
                        'batch 1 at --shape')
    parser.add_argument('--allow-partial', action='store_true',
                        help='export even if the checkpoint leaves weights unloaded')
    parser.add_argument('--cfg-options', nargs='+', action=ConfigOptions)
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from mmbiformer.deploy import (compare, export_onnx, exportable_model,
                                   require_deploy_packages, run_onnxruntime)
    require_deploy_packages()
    check_opset(args.opset)  # before the model is built
    # The --check image and the output folder before the export, not after its minute.
    check_image = read_image(args.check, '--check image') if args.check else None
    prepare_output(args.out)
    cfg = load_config(args.config, args.cfg_options)
    checkpoint = None
    if args.checkpoint != 'none':
        try:
            checkpoint = readable_checkpoint(args.checkpoint)
        except UserError as e:  # also an unreachable model-zoo download
            raise UserError(f'{e}\nTo try the export without weights, pass none as '
                            f'CHECKPOINT (random weights).') from e
    model, scope = exported_model(cfg, checkpoint, args.allow_partial)
    module, covers, names = exportable_model(model, scope)
    dtype = torch.float16 if args.fp16 else torch.float32
    module = module.to(dtype)
    h, w = args.shape or DEFAULT_SHAPE[scope]
    example = torch.rand(1, 3, h, w, dtype=dtype) * 255
    start = time.time()
    export_onnx(module, example, args.out, names, dynamic=args.dynamic, opset=args.opset)
    print(f'exported {covers} of {args.config} to {args.out} (opset {args.opset}, '
          f'{"dynamic batch/H/W" if args.dynamic else f"1x3x{h}x{w}"}, '
          f'{"float16" if args.fp16 else "float32"}) in {time.time() - start:.0f} s')
    if args.check:
        import mmcv
        image = check_image  # BGR, as the graph expects
        if not args.dynamic:
            image = mmcv.imresize(image, (w, h))
        x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]
        x = x.to(dtype)
        with torch.no_grad():
            ref = module(x)
        diff = compare(ref, run_onnxruntime(args.out, x.numpy()))
        print(f'onnxruntime (CPU) vs PyTorch on {args.check} at {x.shape[2]}x{x.shape[3]}: '
              f'largest difference {diff["max_abs"]:.3g}, relative {diff["rel"]:.3g}')
    if args.latency:
        from mmbiformer.deploy.latency import cpu_latency
        ort_ms, torch_ms = cpu_latency(module, args.out, (1, 3, h, w), args.latency, dtype)
        print(f'latency, batch 1, {h}x{w}, CPU ({torch.get_num_threads()} threads), median '
              f'of {args.latency}: onnxruntime {ort_ms:.1f} ms, PyTorch eager '
              f'{torch_ms:.1f} ms')


if __name__ == '__main__':
    try:
        main()
    except (UserError, ArgumentError, CheckpointError, ExportError) as e:
        sys.exit(f'error: {e}')
