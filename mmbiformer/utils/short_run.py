"""Overrides that turn a real config into a short run on generated data.

Used by ``tools/quickstart.py``, ``tools/short_run_options.py`` (for shell scripts) and
the end-to-end tests: the configs themselves keep their real defaults (``data/coco/``,
``data/ade/``, ``data/imagenet/``, real sizes and schedules); everything that changes is
passed as ``--cfg-options``.
"""
from typing import Dict, List, Tuple

# task -> (config, generator kind)
TASKS = {
    'cls': ('configs/cls/biformer_t_in1k.py', 'imagenet'),
    'det': ('configs/det/maskrcnn_biformer_t.py', 'coco'),
    'retinanet': ('configs/det/retinanet_biformer_t.py', 'coco'),
    'rtmdet': ('configs/det/rtmdet_bra_s.py', 'coco'),
    'seg': ('configs/seg/upernet_biformer_t.py', 'ade20k'),
    'sfpn': ('configs/seg/sfpn_biformer_t.py', 'ade20k'),
}
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def _common(batch: int) -> Dict[str, object]:
    opts = {'model.backbone.init_cfg': None,  # no ImageNet weights offline
            'train_dataloader.batch_size': batch,
            'default_hooks.logger.interval': 1}
    for loader in LOADERS:
        opts[f'{loader}.num_workers'] = 0
        opts[f'{loader}.persistent_workers'] = False
    return opts


def short_run_options(task: str, data_root: str, size: Tuple[int, int] = (128, 160),
                      length: int = 1, batch: int = 2) -> Dict[str, object]:
    """``--cfg-options`` for ``task`` on generated data of nominal ``size`` (H, W).

    ``length`` is epochs for the epoch-based configs (cls, det) and ``4 * length``
    iterations for the iteration-based ones (seg).
    """
    h, w = size
    opts = _common(batch)
    root = data_root.rstrip('/') + '/'
    if task in ('det', 'retinanet'):
        for loader in LOADERS:
            opts[f'{loader}.dataset.data_root'] = root
        for evaluator in ('val_evaluator', 'test_evaluator'):
            opts[f'{evaluator}.ann_file'] = root + 'annotations/instances_val2017.json'
        opts['train_dataloader.dataset.pipeline.2.scale'] = (w, h)
        for loader in ('val_dataloader', 'test_dataloader'):
            opts[f'{loader}.dataset.pipeline.1.scale'] = (w, h)
        opts['train_cfg.max_epochs'] = length
        opts['param_scheduler.0.end'] = 10  # warm-up iterations (real: 500)
        opts['param_scheduler.1.milestones'] = [length + 1]  # no step decay
        # Keep low-score boxes so that an early model still gets a (low) COCO score.
        key = 'model.test_cfg.rcnn.score_thr' if task == 'det' else 'model.test_cfg.score_thr'
        opts[key] = 0.0
    elif task == 'rtmdet':
        # RTMDet's square pipeline (mosaic, crop, pad, mix-up) at one side, a
        # multiple of 32; the real one is 640.
        side = max(32, min(h, w) // 32 * 32)
        for loader in LOADERS:
            opts[f'{loader}.dataset.data_root'] = root
        for evaluator in ('val_evaluator', 'test_evaluator'):
            opts[f'{evaluator}.ann_file'] = root + 'annotations/instances_val2017.json'
        train = 'train_dataloader.dataset.pipeline'
        opts.update({f'{train}.2.img_scale': (side, side),
                     f'{train}.3.scale': (2 * side, 2 * side),
                     f'{train}.4.crop_size': (side, side),
                     f'{train}.7.size': (side, side),
                     f'{train}.8.img_scale': (side, side)})
        for loader in ('val_dataloader', 'test_dataloader'):
            opts[f'{loader}.dataset.pipeline.1.scale'] = (side, side)
            opts[f'{loader}.dataset.pipeline.2.size'] = (side, side)
        opts.update({'train_cfg.max_epochs': length, 'train_cfg.val_interval': length,
                     'default_hooks.checkpoint.interval': 1,
                     'param_scheduler.0.end': 10})  # warm-up iterations (real: 1000)
        # An early model's boxes may all score below RTMDet's 0.001 or have no area
        # (its distance predictions near 0) in some runs, and COCO evaluation of no
        # boxes reports no metrics: keep them all, as for the other detectors.
        opts['model.test_cfg.score_thr'] = 0.0
        opts['model.test_cfg.min_bbox_size'] = -1
    elif task in ('seg', 'sfpn'):
        for loader in LOADERS:
            opts[f'{loader}.dataset.data_root'] = root + 'ADEChallengeData2016'
        crop = (min(h, w), min(h, w))
        opts['model.data_preprocessor.size'] = crop
        opts['train_dataloader.dataset.pipeline.2.scale'] = (4 * w, h)
        opts['train_dataloader.dataset.pipeline.3.crop_size'] = crop
        for loader in ('val_dataloader', 'test_dataloader'):
            opts[f'{loader}.dataset.pipeline.1.scale'] = (4 * w, h)
        iters = 4 * length
        opts.update({'train_cfg.max_iters': iters, 'train_cfg.val_interval': iters,
                     'default_hooks.checkpoint.interval': iters,
                     'param_scheduler.0.end': 2, 'param_scheduler.1.begin': 2,
                     'param_scheduler.1.end': iters})
    elif task == 'cls':
        for loader in LOADERS:
            opts[f'{loader}.dataset.data_root'] = root
        opts['train_dataloader.dataset.pipeline.1.scale'] = min(h, w)
        for loader in ('val_dataloader', 'test_dataloader'):
            opts[f'{loader}.dataset.pipeline.1.scale'] = min(h, w) * 8 // 7
            opts[f'{loader}.dataset.pipeline.2.crop_size'] = min(h, w)
        opts['train_cfg.max_epochs'] = length
        opts['val_dataloader.batch_size'] = batch
        opts.update({'param_scheduler.0.end': 1, 'param_scheduler.1.begin': 1,
                     'param_scheduler.1.end': length + 1})
    else:
        raise ValueError(f'task must be one of {sorted(TASKS)}, got {task!r}')
    return opts


def as_cli(opts: Dict[str, object]) -> List[str]:
    """``--cfg-options`` arguments (``key=value`` strings) for the tools."""
    def fmt(v):
        if isinstance(v, tuple):
            return '(' + ','.join(str(x) for x in v) + ')'
        if isinstance(v, list):
            return '[' + ','.join(str(x) for x in v) + ']'
        return 'None' if v is None else str(v)
    return [f'{k}={fmt(v)}' for k, v in opts.items()]
