"""BRA as a plug-in: the residual block, the C2f-style CSP layer, the RTMDet neck, and
the two configs (ResNet plugins in Mask R-CNN, BRA in RTMDet-s's neck)."""
import os.path as osp

import pytest
import torch

from mmbiformer.models import BRABlock
from mmbiformer.models.det import BRACSPNeXtPAFPN, CSPLayerBRA
from mmbiformer.testing import MAKERS
from mmbiformer.utils.launch import load_config
from mmbiformer.utils.short_run import TASKS, as_cli, short_run_options
from helpers import (PLUGIN_CONFIGS, build_model, run_in_process, tool_metrics,
                      train_step_loss)


def test_block_starts_as_identity_and_keeps_shape():
    block = BRABlock(64, n_win=4, topk=3, mlp_ratio=2).eval()
    x = torch.randn(2, 64, 13, 19)
    assert torch.equal(block(x), x)  # zero-initialised last layers


def test_block_is_a_residual_block_with_gradients():
    torch.manual_seed(0)
    block = BRABlock(64, n_win=4, topk=3, mlp_ratio=2, zero_init=False)
    x = torch.randn(2, 64, 13, 19, requires_grad=True)
    y = block(x)
    assert y.shape == x.shape and not torch.allclose(y, x)
    y.square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.any() for p in block.parameters())
    # Residual: the block's change is BRA's (and the MLP's) output, added to x.
    with torch.no_grad():
        h = x.permute(0, 2, 3, 1)
        h = h + block.attn(block.norm1(h))
        h = h + block.mlp(block.norm2(h))
    torch.testing.assert_close(y, h.permute(0, 3, 1, 2))


def test_block_errors():
    with pytest.raises(ValueError, match='divisible by num_heads'):
        BRABlock(48, num_heads=5)
    with pytest.raises(ValueError, match='topk must be an int in'):
        BRABlock(64, n_win=2, topk=5)
    with pytest.raises(ValueError, match='expects an NCHW map'):
        BRABlock(64)(torch.randn(2, 64, 8))


def test_csp_layer_with_bra():
    layer = CSPLayerBRA(32, 48, num_blocks=2, use_cspnext_block=True,
                        bra_cfg=dict(n_win=4, topk=2, head_dim=8))
    x = torch.randn(2, 32, 15, 22)
    y = layer(x)
    assert y.shape == (2, 48, 15, 22)
    y.mean().backward()
    assert layer.final_conv.conv.in_channels == 4 * 24  # C2f: 2 halves + 2 blocks
    assert all(p.grad is not None for p in layer.parameters())


def test_neck_puts_bra_in_the_chosen_layers():
    kwargs = dict(in_channels=[32, 64, 128], out_channels=32, num_csp_blocks=1)
    neck = BRACSPNeXtPAFPN(**kwargs, bra_cfg=dict(n_win=4, topk=4),
                           bra_layers=('top_down', ))
    assert all(isinstance(m, CSPLayerBRA) for m in neck.top_down_blocks)
    assert not any(isinstance(m, CSPLayerBRA) for m in neck.bottom_up_blocks)
    outs = neck([torch.randn(1, 32, 40, 44), torch.randn(1, 64, 20, 22),
                 torch.randn(1, 128, 10, 11)])
    assert [o.shape[1:] for o in outs] == [(32, 40, 44), (32, 20, 22), (32, 10, 11)]
    with pytest.raises(ValueError, match='bra_layers must name'):
        BRACSPNeXtPAFPN(**kwargs, bra_layers=('middle', ))


@pytest.mark.parametrize('path', PLUGIN_CONFIGS, ids=osp.basename)
def test_plugin_config_builds_and_trains_a_step(path):
    cfg = load_config(path)
    cfg.model.backbone.init_cfg = None
    if 'rtmdet' in path:  # its pipeline pads images to 640x640, a multiple of 32
        cfg.model.data_preprocessor.pad_size_divisor = 32
    model = build_model(cfg).train()
    blocks = [m for m in model.modules() if isinstance(m, BRABlock)]
    assert blocks
    if 'rtmdet' in path:
        assert type(model.neck).__name__ == 'BRACSPNeXtPAFPN'
    else:  # 6 + 3 bottlenecks of ResNet-50 stages 3 and 4, after conv2
        assert len(blocks) == 9 and blocks[0].attn.dim == 256
    loss = train_step_loss(model, 'mmdet', masks='rtmdet' not in path)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in blocks[0].parameters())


@pytest.mark.slow
def test_rtmdet_bra_trains_and_tests_end_to_end(tmp_path, capsys):
    """Through the tools, in this process (a new process costs ~10 s of start-up)."""
    config, kind = TASKS['rtmdet']
    data = MAKERS[kind](str(tmp_path / 'coco'), num_train=4, num_val=2, size=(96, 128),
                        small_objects=True)
    work = str(tmp_path / 'work')
    opts = as_cli(short_run_options('rtmdet', data, (96, 128), 1))
    run_in_process('tools/train.py', config, '--work-dir', work, '--cfg-options', *opts)
    with open(osp.join(work, 'last_checkpoint')) as f:
        ckpt = f.read().strip()
    capsys.readouterr()
    run_in_process('tools/test.py', config, ckpt, '--work-dir', work, '--cfg-options', *opts)
    metrics = tool_metrics(capsys.readouterr().out)
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_s'):
        assert key in metrics, metrics
