"""--auto-scale-lr: the total batch against the recipe's (no training, CPU)."""
import mmbiformer.openmmlab  # noqa: F401
from mmengine.config import Config

from mmbiformer.utils.batch_scaling import batch_policy


def _cfg(name):
    return Config.fromfile(f'configs/{name}')


def test_recipe_batch_says_nothing():
    cfg = _cfg('seg/upernet_biformer_s.py')
    assert batch_policy(cfg, 8, scale=True) == []
    assert not cfg.auto_scale_lr.enable


def test_smaller_batch_is_reported_with_the_fix():
    cfg = _cfg('seg/upernet_biformer_s.py')
    message, = batch_policy(cfg, 4, scale=False)
    assert 'total batch 8 (4 GPU(s) x 2)' in message and "recipe's 16" in message
    assert 'issues #6, #32, #34' in message and '--auto-scale-lr' in message
    assert cfg.train_cfg.max_iters == 160000 and not cfg.auto_scale_lr.enable


def test_iteration_schedule_scaled_to_the_same_images():
    cfg = _cfg('seg/upernet_biformer_s.py')
    messages = batch_policy(cfg, 4, scale=True)
    assert cfg.auto_scale_lr.enable and cfg.auto_scale_lr.base_batch_size == 16
    assert cfg.train_cfg.max_iters == 320000 and cfg.train_cfg.val_interval == 32000
    warmup, poly = cfg.param_scheduler
    assert (warmup.end, poly.begin, poly.end) == (3000, 3000, 320000)
    assert cfg.default_hooks.checkpoint.interval == 32000
    assert 'scaled by 8/16 = 0.5' in messages[0] and '320000 iterations' in messages[1]


def test_epoch_schedule_scales_only_the_learning_rate():
    cfg = _cfg('det/maskrcnn_biformer_s.py')
    batch_policy(cfg, 1, scale=True)
    assert cfg.auto_scale_lr.enable and cfg.train_cfg.max_epochs == 12
    assert cfg.param_scheduler[1].milestones == [8, 11]
