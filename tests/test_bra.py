"""BiLevelRoutingAttention (reference path) against the independent official oracle."""
import pytest
import torch
import torch.nn as nn

from mmbiformer.ops.bra import BiLevelRoutingAttention
from official_reference import bra as official_bra


def _randomize(module: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


@pytest.mark.parametrize('size', [(14, 14), (13, 9), (3, 5), (21, 28)])
@pytest.mark.parametrize('n_win,topk', [(7, 4), (4, 16), (1, 1)])
def test_matches_official_identity(size, n_win, topk):
    torch.manual_seed(0)
    attn = BiLevelRoutingAttention(32, num_heads=4, n_win=n_win, topk=topk,
                                   side_dwconv=5, auto_pad=True).eval()
    _randomize(attn)
    attn_named = {'m.' + k: v for k, v in attn.state_dict().items()}
    x = torch.randn(2, *size, 32)
    ref = official_bra(x, attn_named, 'm', 4, n_win, topk)
    out = attn(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('mode,pool', [
    ('ada_avgpool', nn.AdaptiveAvgPool2d(2)), ('ada_maxpool', nn.AdaptiveMaxPool2d(2)),
    ('avgpool', nn.AvgPool2d(2)), ('maxpool', nn.MaxPool2d(2))])
def test_matches_official_kv_downsample(mode, pool):
    attn = BiLevelRoutingAttention(16, num_heads=2, n_win=2, qk_dim=24, topk=3,
                                   kv_downsample_mode=mode, kv_per_win=2,
                                   kv_downsample_ratio=2, side_dwconv=3).eval()
    _randomize(attn, 1)
    named = {'m.' + k: v for k, v in attn.state_dict().items()}
    x = torch.randn(1, 8, 12, 16)
    ref = official_bra(x, named, 'm', 2, 2, 3, qk_dim=24, kv_pool=pool)
    torch.testing.assert_close(attn(x), ref, rtol=1e-4, atol=1e-5)


def test_soft_routing_and_qkv_mode():
    attn = BiLevelRoutingAttention(16, num_heads=2, n_win=3, topk=2, param_attention='qkv',
                                   soft_routing=True, side_dwconv=3).eval()
    _randomize(attn, 2)
    assert isinstance(attn.wo, nn.Identity)
    named = {'m.' + k: v for k, v in attn.state_dict().items()}
    x = torch.randn(2, 9, 6, 16)
    ref = official_bra(x, named, 'm', 2, 3, 2, soft_routing=True)
    torch.testing.assert_close(attn(x), ref, rtol=1e-4, atol=1e-5)


def test_routing_gradients():
    x = torch.randn(1, 8, 8, 16, requires_grad=True)
    hard = BiLevelRoutingAttention(16, num_heads=2, n_win=2, topk=2)
    hard(x).sum().backward()
    assert all(p.grad is not None for p in hard.parameters())
    soft = BiLevelRoutingAttention(16, num_heads=2, n_win=2, topk=2, param_routing=True,
                                   diff_routing=True, soft_routing=True)
    soft(x).sum().backward()
    assert soft.router.emb.weight.grad is not None
    assert soft.router.emb.weight.grad.abs().sum() > 0


def test_without_auto_pad_requires_multiples():
    attn = BiLevelRoutingAttention(16, num_heads=2, n_win=4, topk=2, auto_pad=False)
    assert attn(torch.randn(1, 8, 8, 16)).shape == (1, 8, 8, 16)
    with pytest.raises(ValueError, match='auto_pad=True'):
        attn(torch.randn(1, 9, 8, 16))
    with pytest.raises(ValueError, match='NHWC'):
        attn(torch.randn(1, 16, 8, 8))


@pytest.mark.parametrize('kwargs,match', [
    (dict(dim=30, num_heads=4), 'divisible by num_heads'),
    (dict(dim=32, qk_dim=20, num_heads=8), 'divisible by num_heads'),
    (dict(dim=32, n_win=2, topk=5), r'topk must be an int in \[1, n_win\*\*2 = 4\]'),
    (dict(dim=32, topk=0), 'topk'),
    (dict(dim=32, n_win=0), 'n_win must be an int >= 1'),
    (dict(dim=32, kv_downsample_mode='fracpool'), 'kv_downsample_mode must be one of'),
    (dict(dim=32, param_attention='none'), 'param_attention must be one of'),
    (dict(dim=32, kv_downsample_mode='ada_avgpool', kv_per_win=0), 'kv_per_win'),
    (dict(dim=32, kv_downsample_mode='avgpool', kv_downsample_ratio=None),
     'kv_downsample_ratio'),
    (dict(dim=32, param_routing=True), 'param_routing=True needs diff_routing=True'),
    (dict(dim=32, diff_routing=True), 'diff_routing=True needs soft_routing=True'),
    (dict(dim=32, side_dwconv=4), 'side_dwconv'),
])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BiLevelRoutingAttention(**kwargs)
