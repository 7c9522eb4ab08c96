"""The stack fixes applied on ``import mmbiformer``."""
import torch

import mmbiformer  # noqa: F401


def test_roi_align_accepts_bf16():
    from mmcv.ops import RoIAlign
    op = RoIAlign(7, 1.0, 0)
    x = torch.randn(1, 4, 16, 16)
    rois = torch.tensor([[0., 1, 1, 10, 10]])
    out = op(x.bfloat16(), rois.bfloat16())
    assert out.dtype == torch.bfloat16
    ref = op(x.bfloat16().float(), rois.bfloat16().float())
    torch.testing.assert_close(out.float(), ref, rtol=1e-2, atol=1e-2)


def test_runner_checkpoint_loads_safely(tmp_path):
    """What mmengine's Runner saves (message hub with HistoryBuffers, numpy values)
    loads with weights_only=True."""
    import numpy as np
    from mmengine.logging import MessageHub
    hub = MessageHub.get_instance('compat-test')
    hub.update_scalar('train/loss', 1.5)
    hub.update_scalar('train/loss', np.float64(1.25))
    hub.update_info('iter', 7)
    ckpt = {'meta': {'epoch': 1, 'iter': 7, 'seed': np.int64(3),
                     'message_hub': hub.state_dict()},
            'state_dict': {'w': torch.ones(2)}}
    torch.save(ckpt, tmp_path / 'c.pth')
    loaded = torch.load(tmp_path / 'c.pth', weights_only=True)
    buf = loaded['meta']['message_hub']['log_scalars']['train/loss']
    assert buf.mean() == 1.375 and buf.current() == 1.25


def test_foreign_callables_still_refused(tmp_path):
    import os
    import pickle
    import pytest
    torch.save({'x': os.system}, tmp_path / 'evil.pth')
    with pytest.raises(pickle.UnpicklingError):
        torch.load(tmp_path / 'evil.pth', weights_only=True)


def test_focal_loss_runs_half_logits_in_fp32():
    from mmcv.ops.focal_loss import SigmoidFocalLossFunction

    from mmbiformer.compat import _fp32_focal_loss_forward
    assert SigmoidFocalLossFunction.forward._mmbiformer_fp32
    seen = []
    wrapped = _fp32_focal_loss_forward(lambda ctx, x, *rest: seen.append((x.dtype, rest)))
    target = torch.zeros(3, dtype=torch.long)
    wrapped(None, torch.zeros(3, 2, dtype=torch.float16), target, 2.0, 0.25, None, 'mean')
    wrapped(None, torch.zeros(3, 2, dtype=torch.bfloat16), target)
    wrapped(None, torch.zeros(3, 2, dtype=torch.float64), target)
    assert [d for d, _ in seen] == [torch.float32, torch.float32, torch.float64]
    assert seen[0][1] == (target, 2.0, 0.25, None, 'mean')


def test_focal_loss_half_cuda_is_finite():
    import pytest
    if not torch.cuda.is_available():
        pytest.skip('needs CUDA (mmcv has no CPU focal loss kernel)')
    from mmcv.ops import sigmoid_focal_loss
    logits = torch.tensor([[-30., 12.], [5., -20.]], device='cuda').half().requires_grad_()
    target = torch.tensor([1, 0], device='cuda')
    loss = sigmoid_focal_loss(logits, target, 2.0, 0.25, None, 'mean')
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert logits.grad.dtype == torch.float16
