"""BucketedFCNMaskHead: the same outputs and gradients as mmdet's FCNMaskHead."""
import pytest
import torch
from mmengine.config import Config

import mmbiformer.openmmlab  # noqa: F401
from mmbiformer.models.det import BucketedFCNMaskHead


def _pair(**kwargs):
    from mmdet.models.roi_heads.mask_heads import FCNMaskHead
    torch.manual_seed(0)
    ref = FCNMaskHead(num_convs=2, in_channels=8, conv_out_channels=8, num_classes=3,
                      **kwargs)
    bucketed = BucketedFCNMaskHead(num_convs=2, in_channels=8, conv_out_channels=8,
                                   num_classes=3, roi_bucket=4, **kwargs)
    bucketed.load_state_dict(ref.state_dict())
    return ref, bucketed


@pytest.mark.parametrize('n', [0, 1, 3, 4, 5])
def test_matches_fcn_mask_head(n):
    ref, bucketed = _pair()
    x = torch.randn(n, 8, 14, 14, dtype=torch.float64)
    ref, bucketed = ref.double(), bucketed.double()
    outs, grads = [], []
    for head in (ref, bucketed):
        xi = x.clone().requires_grad_()
        out = head(xi)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        outs.append(out)
        grads.append([xi.grad] + [p.grad for p in head.parameters()])
    assert outs[1].shape == (n, 3, 28, 28)
    torch.testing.assert_close(outs[1], outs[0], rtol=0, atol=1e-12)
    for g_bucketed, g_ref in zip(grads[1], grads[0]):
        torch.testing.assert_close(g_bucketed, g_ref, rtol=1e-10, atol=1e-12)


def test_pads_to_bucket_shapes():
    _, head = _pair()
    seen = []
    head.convs[0].register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[0]))
    for n in (1, 3, 5, 8, 9):
        head(torch.randn(n, 8, 14, 14))
    assert seen == [4, 4, 8, 8, 12]


def test_refuses_batch_norm_and_bad_bucket():
    with pytest.raises(ValueError, match='batch statistics'):
        BucketedFCNMaskHead(num_classes=3, norm_cfg=dict(type='BN'))
    BucketedFCNMaskHead(num_classes=3, norm_cfg=dict(type='BN'), roi_bucket=0)
    BucketedFCNMaskHead(num_classes=3, norm_cfg=dict(type='GN', num_groups=32))
    with pytest.raises(ValueError, match='roi_bucket'):
        BucketedFCNMaskHead(num_classes=3, roi_bucket=-1)


def test_maskrcnn_configs_use_it():
    for arch in 'tsb':
        cfg = Config.fromfile(f'configs/det/maskrcnn_biformer_{arch}.py')
        assert cfg.model.roi_head.mask_head.type == 'BucketedFCNMaskHead'
        assert 'mmbiformer.models.det' in cfg.custom_imports.imports
