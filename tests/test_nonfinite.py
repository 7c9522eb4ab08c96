"""A diverging run stops at its first non-finite loss with a clear message, its
checkpoints stay finite; tools refuse checkpoints holding NaN (CPU)."""
import os.path as osp

import pytest
import torch
from mmengine.logging import MessageHub, MMLogger
from mmengine.model import BaseModel
from mmengine.optim import OptimWrapper

from mmbiformer.engine import NonFiniteLossError, NonFiniteLossHook
from mmbiformer.testing import MAKERS
from mmbiformer.utils.short_run import as_cli, short_run_options
from helpers import tool_error

CONFIG = 'configs/det/retinanet_biformer_t.py'
SIZE = (96, 128)


class _Model(BaseModel):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(2, 1)

    def forward(self, *args, **kwargs):
        raise NotImplementedError


class _Runner:
    """What the hook reads of mmengine's Runner."""

    def __init__(self, tmp_path):
        self.model = _Model()
        self.optim_wrapper = OptimWrapper(torch.optim.SGD(self.model.parameters(), lr=0.1))
        self.message_hub = MessageHub.get_instance('test_nonfinite')
        self.logger = MMLogger.get_instance('test_nonfinite')
        self.iter, self.epoch, self.work_dir = 6, 1, str(tmp_path)


def _step(runner, value):
    out = runner.model.fc(torch.ones(1, 2)).sum()
    losses = {'loss_cls': out * value, 'loss_bbox': out * 0 + 1}
    loss, _ = runner.model.parse_losses(losses)
    runner.optim_wrapper.update_params(loss)


def test_stops_before_the_update_naming_the_terms(tmp_path):
    runner = _Runner(tmp_path)
    hook = NonFiniteLossHook()
    hook.before_train(runner)
    before = [p.clone() for p in runner.model.parameters()]
    with pytest.raises(NonFiniteLossError) as e:
        _step(runner, float('nan'))
    message = str(e.value)
    assert 'iteration 7' in message and 'loss_cls=nan' in message
    assert 'finite: loss_bbox' in message and 'learning rate' in message
    assert 'skip=True' in message and 'No checkpoint was written yet' in message
    assert all(torch.equal(a, b) for a, b in zip(before, runner.model.parameters()))


def test_the_terms_kept_for_the_message_hold_no_graph(tmp_path):
    runner = _Runner(tmp_path)
    hook = NonFiniteLossHook()
    hook.before_train(runner)
    _step(runner, 2.0)
    assert set(hook._terms) == {'loss', 'loss_cls', 'loss_bbox'}
    assert all(t.grad_fn is None for t in hook._terms.values())


def test_skip_mode_skips_and_counts(tmp_path):
    runner = _Runner(tmp_path)
    hook = NonFiniteLossHook(skip=True, max_skips=2)
    hook.before_train(runner)
    before = [p.clone() for p in runner.model.parameters()]
    _step(runner, float('inf'))
    assert all(torch.equal(a, b) for a, b in zip(before, runner.model.parameters()))
    assert hook.skipped == 1
    assert runner.message_hub.get_scalar('train/skipped_steps').current() == 1
    _step(runner, 1.0)  # a finite step updates and resets the run of skips
    assert not all(torch.equal(a, b) for a, b in zip(before, runner.model.parameters()))
    _step(runner, float('nan'))
    _step(runner, float('nan'))
    with pytest.raises(NonFiniteLossError, match='after 3 skipped steps'):
        _step(runner, float('nan'))


def test_nan_gradients_of_a_finite_loss_stop_before_the_step(tmp_path):
    runner = _Runner(tmp_path)
    NonFiniteLossHook().before_train(runner)
    before = [p.clone() for p in runner.model.parameters()]
    out = runner.model.fc(torch.ones(1, 2)).sum()
    loss, _ = runner.model.parse_losses({'loss': torch.sqrt(out * 0)})  # 0, grad nan
    with pytest.raises(NonFiniteLossError, match='non-finite gradients at iteration 7'):
        runner.optim_wrapper.update_params(loss)
    assert all(torch.equal(a, b) for a, b in zip(before, runner.model.parameters()))


@pytest.mark.slow
def test_diverging_run_stops_and_keeps_finite_checkpoints(tmp_path):
    """Epoch 1 at the config's learning rate, then x1e12: the run stops in epoch 2 with
    exit 1, epoch_1.pth stays the newest, finite; a NaN checkpoint is refused by test."""
    coco = MAKERS['coco'](str(tmp_path / 'coco'), num_train=4, num_val=1, size=SIZE)
    work = str(tmp_path / 'w')
    opts = ['--cfg-options', *as_cli(short_run_options('retinanet', coco, SIZE, 2)),
            'param_scheduler.0.end=1', 'param_scheduler.1.milestones=[1]',
            'param_scheduler.1.gamma=1e12', 'train_cfg.val_interval=10']
    # In this process (a tool process costs its start-up, ~10 s); a traceback fails here.
    out = tool_error('tools/train.py', CONFIG, '--work-dir', work, *opts)
    assert 'non-finite loss at iteration' in out and '(epoch 2)' in out, out
    assert osp.join(work, 'epoch_1.pth') in out and 'lower learning rate' in out
    assert not osp.exists(osp.join(work, 'epoch_2.pth'))
    state = torch.load(osp.join(work, 'epoch_1.pth'), weights_only=True)['state_dict']
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    # A checkpoint with NaN weights: tools/test.py refuses it, naming the cause.
    ckpt = torch.load(osp.join(work, 'epoch_1.pth'), weights_only=True)
    key = next(k for k, v in ckpt['state_dict'].items() if v.is_floating_point())
    ckpt['state_dict'][key] = ckpt['state_dict'][key] * float('nan')
    bad = str(tmp_path / 'nan.pth')
    torch.save(ckpt, bad)
    out = tool_error('tools/test.py', CONFIG, bad, '--work-dir', str(tmp_path / 'test'), *opts)
    assert 'hold NaN or inf values' in out and 'diverged' in out


def test_the_fp16_hint_names_the_model_that_ran(tmp_path):
    """The fp16-overflow hint names the model; BiFormer's upstream NaN report only for
    a BiFormer backbone."""
    from mmengine.optim import AmpOptimWrapper

    class Swin(torch.nn.Module):
        pass

    class RetinaNet(_Model):
        def __init__(self, backbone):
            super().__init__()
            self.backbone = backbone

    runner = _Runner(tmp_path)
    amp = object.__new__(AmpOptimWrapper)  # fp16 as the GPU wrapper holds it
    amp.optimizer, amp.cast_dtype = runner.optim_wrapper.optimizer, None
    runner.model = RetinaNet(Swin())
    hook = NonFiniteLossHook()
    message = hook._message(runner, amp)
    assert 'RetinaNet in float16 mixed precision' in message
    assert 'BiFormer' not in message
    from mmbiformer.models import BiFormer
    runner.model = RetinaNet(BiFormer(dict(depths=[1, 1, 1, 1], embed_dims=[8, 16, 32, 64],
                                           topks=[1, 1, 1, -2], head_dim=8, mlp_ratio=1)))
    assert 'BiFormer has been reported to give NaN' in hook._message(runner, amp)
