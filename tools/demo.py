#!/usr/bin/env python
"""Run a config + checkpoint on one image and write the picture with the prediction.

    python tools/demo.py configs/det/maskrcnn_biformer_s.py CKPT demo.jpg --out det.jpg
    python tools/demo.py configs/seg/upernet_biformer_s.py CKPT demo.jpg --out seg.jpg
    python tools/demo.py configs/cls/biformer_s_in1k.py biformer-s_in1k demo.jpg

Detection draws boxes and masks (mmdet's visualiser), segmentation overlays the mask
(mmseg's), classification prints the top-5 classes.
"""
import argparse
import sys

import mmbiformer.openmmlab  # noqa: F401  (stack fixes, registrations)
from mmbiformer.errors import ArgumentError
from mmbiformer.weights.checkpoint import CheckpointError, check_model_checkpoint
from mmbiformer.errors import UserError
from mmbiformer.weights.checkpoint_refs import readable_checkpoint
from mmbiformer.utils.images import read_image, shrink_to_side
from mmbiformer.utils.launch import load_config
from mmbiformer.utils.cfg_options import ConfigOptions


def demo_det(cfg, checkpoint, image, args):
    import mmcv
    from mmdet.apis import inference_detector, init_detector
    from mmdet.registry import VISUALIZERS
    model = init_detector(cfg, checkpoint, device=args.device)
    check_model_checkpoint(model, checkpoint, args.allow_partial)
    result = inference_detector(model, image)
    # No storage backend: the picture goes to --out (a LocalVisBackend without a
    # save_dir only warns).
    visualizer = VISUALIZERS.build(dict(model.cfg.visualizer, vis_backends=None))
    visualizer.dataset_meta = model.dataset_meta
    img = mmcv.imconvert(mmcv.imread(image), 'bgr', 'rgb')
    visualizer.add_datasample('result', img, data_sample=result, draw_gt=False, show=False,
                              out_file=args.out, pred_score_thr=args.score_thr)
    scores = result.pred_instances.scores
    kept = int((scores >= args.score_thr).sum())
    below = len(scores) - kept
    more = (f'; {below} more below it (highest {float(scores.max()):.3f}: lower '
            f'--score-thr to draw them)' if below else '')
    # The model's own threshold drops detections before the demo sees them.
    key, own = _test_score_thr(model.cfg.model.get('test_cfg'))
    if own is not None and args.score_thr < own:
        more += (f'; the model already dropped those below its {key} {own}: lower it too '
                 f'for more (--cfg-options model.{key}={args.score_thr})')
    print(f'{kept} instances with score >= {args.score_thr} drawn to {args.out}{more}')


def _test_score_thr(test_cfg):
    """(its key under ``model``, value) of the detector's own score threshold:
    ``test_cfg.score_thr``, or the second stage's ``test_cfg.rcnn.score_thr``; the value
    is None where it has none."""
    key = 'test_cfg.score_thr'
    if test_cfg and 'rcnn' in test_cfg:
        key, test_cfg = 'test_cfg.rcnn.score_thr', test_cfg['rcnn']
    thr = (test_cfg or {}).get('score_thr')
    return key, float(thr) if isinstance(thr, (int, float)) else None


def demo_seg(cfg, checkpoint, image, args):
    from mmseg.apis import inference_model, init_model
    from mmengine.runner import load_checkpoint
    # Loaded here, not by init_model: it fails on a checkpoint without 'meta'.
    model = init_model(cfg, None, device=args.device)
    check_model_checkpoint(model, checkpoint, args.allow_partial)
    meta = load_checkpoint(model, checkpoint, map_location='cpu').get('meta') or {}
    model.dataset_meta = meta.get('dataset_meta') or _seg_meta(model)
    import mmcv
    img = mmcv.imread(image)
    h, w = img.shape[:2]
    # The prediction is upsampled to the input's size as float logits per class: 15 GB
    # for 150 classes at 5000x5000. Resize the image down first.
    img, scale = shrink_to_side(img, args.max_side, interpolation='bilinear')
    if scale < 1:
        print(f'{image}: {w}x{h} resized to {img.shape[1]}x{img.shape[0]} (--max-side '
              f'{args.max_side}: the class scores at full size would need '
              f'{h * w * model.decode_head.num_classes * 4 / 2**30:.1f} GiB)')
    result = inference_model(model, img)
    if min(img.shape[:2]) < MIN_VISUALISER_SIDE:
        _overlay_seg(img, result.pred_sem_seg.data[0].cpu().numpy(),
                     model.dataset_meta['palette'], args.opacity, args.out)
    else:
        # mmseg's show_result_pyplot, without the storage backend it adds with no
        # save_dir (a warning at every call): the picture goes to --out.
        from mmseg.visualization import SegLocalVisualizer
        visualizer = SegLocalVisualizer(alpha=args.opacity)
        visualizer.dataset_meta = dict(classes=model.dataset_meta['classes'],
                                       palette=model.dataset_meta['palette'])
        visualizer.add_datasample('result', img, data_sample=result, draw_gt=False,
                                  show=False, out_file=args.out)
    classes = model.dataset_meta['classes']
    labels = result.pred_sem_seg.data.unique().tolist()
    names = [f'{classes[i]} ({i})' if 0 <= i < len(classes) else str(i) for i in labels]
    print(f'classes {", ".join(names)} overlaid on {args.out}')


# mmseg's visualiser fails on images this small (it places class-name labels inside
# each region: IndexError on a 1x1 image); those get a plain colour overlay.
MIN_VISUALISER_SIDE = 32


def _seg_meta(model) -> dict:
    """Class names and palette of the dataset with the model's number of classes
    (as mmseg's init_model does for checkpoints that carry none)."""
    from mmseg.utils import dataset_aliases, get_classes, get_palette
    n = model.decode_head.num_classes
    name = next((d for d in dataset_aliases if len(get_classes(d)) == n), 'cityscapes')
    return {'classes': get_classes(name), 'palette': get_palette(name)}


def _overlay_seg(img, labels, palette, opacity, out_file):
    import mmcv
    import numpy as np
    colours = np.asarray(palette, dtype=np.float32)[:, ::-1]  # RGB palette, BGR image
    mask = colours[np.clip(labels, 0, len(colours) - 1)]
    mmcv.imwrite((img * (1 - opacity) + mask * opacity).astype(np.uint8), out_file)


def demo_cls(cfg, checkpoint, image, args):
    from mmpretrain.apis import ImageClassificationInferencer
    inferencer = ImageClassificationInferencer(cfg, pretrained=checkpoint, device=args.device)
    check_model_checkpoint(inferencer.model, checkpoint, args.allow_partial)
    result = inferencer(image)[0]
    scores = result['pred_scores']
    classes = inferencer.classes or [str(i) for i in range(len(scores))]
    for rank, i in enumerate(scores.argsort()[::-1][:5], 1):
        print(f'{rank}. {classes[i]} (label {i}, score {scores[i]:.3f})')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('checkpoint', help='checkpoint file or model-zoo name')
    parser.add_argument('image')
    parser.add_argument('--out', default='demo_out.jpg', help='output picture')
    parser.add_argument('--device', default='cuda:0' if _cuda() else 'cpu')
    parser.add_argument('--score-thr', type=float, default=0.3)
    parser.add_argument('--opacity', type=float, default=0.5)
    parser.add_argument('--max-side', type=int, default=2048,
                        help='segmentation: resize larger images down to this side first '
                        '(memory of the full-size class scores; 0: never)')
    parser.add_argument('--allow-partial', action='store_true',
                        help='run even if the checkpoint leaves model weights unloaded or '
                        'mis-shaped (refused otherwise)')
    parser.add_argument('--cfg-options', nargs='+', action=ConfigOptions)
    args = parser.parse_args(argv)
    read_image(args.image)  # a missing or corrupt image is named before any work
    cfg = load_config(args.config, args.cfg_options)
    checkpoint = readable_checkpoint(args.checkpoint)
    run = {'mmdet': demo_det, 'mmseg': demo_seg, 'mmpretrain': demo_cls}.get(
        cfg.get('default_scope'))
    if run is None:
        raise UserError(f'no demo for default_scope {cfg.get("default_scope")!r}')
    run(cfg, checkpoint, args.image, args)


def _cuda() -> bool:
    import torch
    return torch.cuda.is_available()


if __name__ == '__main__':
    try:
        main()
    except (UserError, ArgumentError, CheckpointError) as e:
        sys.exit(f'error: {e}')
