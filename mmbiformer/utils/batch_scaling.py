"""Training on another total batch than the recipe's (``--auto-scale-lr``).

The recipes assume 8 GPUs (COCO 8x2, ADE20K UperNet 8x2, Semantic FPN 8x4, ImageNet
8x128). Training on fewer GPUs with the recipe's learning rate is the most frequent
upstream question: BiFormer issues #6, #32, #34, e.g. UperNet S at a total batch of 8
reaching mIoU 45.3 against the published 49.8. The tools say when the batch differs;
``--auto-scale-lr`` scales the learning rate linearly (mmengine's ``auto_scale_lr``) and,
for iteration-based schedules, the iteration counts, so that as many images are seen.
"""
from typing import List

# Config keys of an iteration-based schedule counted in iterations.
_ITER_SCHEDULER_KEYS = ('begin', 'end', 'T_max')


def recipe_batch(cfg) -> int:
    scale = cfg.get('auto_scale_lr') or {}
    return int(scale.get('base_batch_size', 0) or 0)


def batch_policy(cfg, world_size: int, scale: bool) -> List[str]:
    """Check the total batch against the recipe's; with ``scale``, adapt ``cfg``.

    Returns the messages to log (empty when the batch is the recipe's)."""
    per_gpu = int(cfg.train_dataloader.batch_size)
    total, recipe = world_size * per_gpu, recipe_batch(cfg)
    if not recipe or total == recipe:
        return []
    iter_based = 'max_iters' in cfg.train_cfg
    ratio = total / recipe
    what = (f'total batch {total} ({world_size} GPU(s) x {per_gpu}) differs from the '
            f"recipe's {recipe}")
    if not scale:
        return [f'{what}: the learning rate and schedule are still the recipe\'s, which '
                f'can cost accuracy (BiFormer issues #6, #32, #34 report lower results '
                f'at smaller batches). Pass --auto-scale-lr to scale the learning rate by '
                f'{total}/{recipe}' + (' and the iterations by '
                                       f'{recipe}/{total} (as many images seen)'
                                       if iter_based else '') + '.']
    cfg.auto_scale_lr = dict(cfg.get('auto_scale_lr') or {}, enable=True,
                             base_batch_size=recipe)
    messages = [f'{what}: learning rate scaled by {total}/{recipe} = {ratio:g}']
    if iter_based:
        factor = recipe / total
        _scale_iterations(cfg, factor)
        messages.append(f'iteration-based schedule scaled by {factor:g} to '
                        f'{cfg.train_cfg.max_iters} iterations (as many images seen)')
    return messages


def _scale_iterations(cfg, factor: float) -> None:
    def n(value):
        return max(1, round(value * factor))

    cfg.train_cfg.max_iters = n(cfg.train_cfg.max_iters)
    if cfg.train_cfg.get('val_interval'):
        cfg.train_cfg.val_interval = n(cfg.train_cfg.val_interval)
    schedulers = cfg.get('param_scheduler') or []
    for sched in schedulers if isinstance(schedulers, list) else [schedulers]:
        if sched.get('by_epoch', True):
            continue
        for key in _ITER_SCHEDULER_KEYS:
            if isinstance(sched.get(key), (int, float)):
                sched[key] = n(sched[key])
        if sched.get('milestones'):
            sched['milestones'] = [n(m) for m in sched['milestones']]
    checkpoint = (cfg.get('default_hooks') or {}).get('checkpoint')
    if checkpoint and not checkpoint.get('by_epoch', True) and checkpoint.get('interval'):
        checkpoint['interval'] = n(checkpoint['interval'])
