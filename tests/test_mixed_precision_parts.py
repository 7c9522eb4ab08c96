"""FP32FocalLoss and BF16SafeRoIExtractor: mmdet's parts with fp32 where mmcv's kernels
fail in half precision, named by our detection configs."""
import pytest
import torch
from mmengine.config import Config

from mmbiformer.models.det import BF16SafeRoIExtractor, FP32FocalLoss


def test_focal_loss_half_logits_computed_in_fp32():
    from mmdet.models.losses import FocalLoss
    torch.manual_seed(0)
    logits = torch.randn(6, 3) * 8
    target = torch.tensor([0, 1, 2, 3, 1, 0])  # 3 = background
    ours, ref = FP32FocalLoss(use_sigmoid=True), FocalLoss(use_sigmoid=True)
    half = logits.half().requires_grad_()
    loss = ours(half, target)
    loss.backward()
    assert loss.dtype == torch.float32 and half.grad.dtype == torch.float16
    torch.testing.assert_close(loss, ref(half.detach().float(), target))
    full = logits.clone().requires_grad_()
    torch.testing.assert_close(ours(full, target), ref(full, target), rtol=0, atol=0)


def test_roi_extractor_bf16_in_fp32():
    from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
    cfg = dict(roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0),
               out_channels=4, featmap_strides=[4, 8])
    ours, ref = BF16SafeRoIExtractor(**cfg), SingleRoIExtractor(**cfg)
    feats = (torch.randn(1, 4, 32, 32), torch.randn(1, 4, 16, 16))
    rois = torch.tensor([[0., 2, 2, 60, 50], [0., 10, 4, 120, 100]])
    out = ours(tuple(f.bfloat16() for f in feats), rois.bfloat16())
    assert out.dtype == torch.bfloat16
    expected = ref(tuple(f.bfloat16().float() for f in feats), rois.bfloat16().float())
    torch.testing.assert_close(out.float(), expected, rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(ours(feats, rois), ref(feats, rois), rtol=0, atol=0)


@pytest.mark.parametrize('config,path', [
    ('configs/det/retinanet_biformer_s.py', 'bbox_head.loss_cls.type'),
    ('configs/det/maskrcnn_biformer_s.py', 'roi_head.bbox_roi_extractor.type'),
    ('configs/det/maskrcnn_biformer_s.py', 'roi_head.mask_roi_extractor.type')])
def test_configs_name_them(config, path):
    node = Config.fromfile(config).model
    for key in path.split('.'):
        node = node[key]
    assert node in ('FP32FocalLoss', 'BF16SafeRoIExtractor')


@pytest.mark.parametrize('capability, dtype, warned', [
    ((7, 5), 'bfloat16', True), ((7, 0), 'bfloat16', True), ((8, 6), 'bfloat16', False),
    ((7, 5), 'float16', False), ((7, 5), None, False)])
def test_bf16_on_gpus_without_bf16_arithmetic_is_warned(capability, dtype, warned,
                                                         monkeypatch):
    """A T4 or V100 emulates bf16: a config asking for it hears the fp16 option."""
    from mmengine.logging import MMLogger
    from mmbiformer.utils.launch import fit_to_device
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'get_device_capability', lambda *a: capability)
    monkeypatch.setattr(torch.cuda, 'get_device_name', lambda *a: 'Tesla T4')
    said = []
    monkeypatch.setattr(MMLogger.get_current_instance(), 'warning', said.append)
    monkeypatch.setattr(MMLogger.get_current_instance(), 'log',
                        lambda level, msg, *a, **k: said.append(msg))
    wrapper = dict(type='AmpOptimWrapper', optimizer=dict(type='AdamW', lr=1e-3))
    if dtype:
        wrapper['dtype'] = dtype
    cfg = Config(dict(optim_wrapper=wrapper))
    fit_to_device(cfg)
    assert cfg.optim_wrapper == wrapper  # the config's choice stands
    text = ' '.join(said)
    assert ('--cfg-options optim_wrapper.dtype=float16' in text) == warned
    if warned:
        assert f'compute capability {capability[0]}.{capability[1]}' in text
