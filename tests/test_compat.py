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
