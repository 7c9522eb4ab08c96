"""ops/linear.py: in a captured step its gradients are autograd's (re-stated by
``nn.Linear``), under autocast too; outside one it is ``nn.Linear``. ``GeluLinear``
with GELU recomputed: autograd's numbers (``nn.GELU`` then ``nn.Linear``), less kept
for the backward; BiFormer's ``mlp_recompute`` modes equal to keeping everything, and
keeping less."""
import pytest
import torch
import torch.nn as nn

from mmbiformer.ops.policy import captured_step
from mmbiformer.ops.linear import GeluLinear, Linear


def _grads(layer, x, grad, autocast):
    x = x.detach().requires_grad_()
    layer.zero_grad(set_to_none=True)
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):
        out = layer(x)
    out.backward(grad.to(out.dtype))
    return out, x.grad, layer.weight.grad, layer.bias.grad


@pytest.mark.parametrize('autocast', [False, True])
def test_captured_linear_matches_nn_linear(autocast):
    torch.manual_seed(0)
    ref = nn.Linear(24, 40)
    ours = Linear(24, 40)
    ours.load_state_dict(ref.state_dict())
    dtype = torch.float32 if autocast else torch.float64
    ref.to(dtype), ours.to(dtype)
    x = torch.randn(2, 5, 7, 24, dtype=dtype)
    grad = torch.randn(2, 5, 7, 40, dtype=dtype)
    expected = _grads(ref, x, grad, autocast)
    with captured_step():
        got = _grads(ours, x, grad, autocast)
    for a, b in zip(got, expected):
        assert a.dtype == b.dtype
        # bf16 products: the sums may round differently; fp64: exact up to order.
        tol = dict(rtol=2e-2, atol=2e-2) if autocast else dict(rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(a, b, **tol)


def test_outside_captured_step_is_nn_linear(monkeypatch):
    from mmbiformer.ops import linear
    monkeypatch.setattr(linear._LinearMvBias, 'apply',
                        lambda *a: pytest.fail('custom function outside a captured step'))
    layer = Linear(4, 3)
    assert isinstance(layer, nn.Linear)
    assert set(layer.state_dict()) == {'weight', 'bias'}
    layer(torch.randn(2, 4)).sum().backward()


@pytest.mark.parametrize('autocast', [False, True])
def test_gelu_linear_recomputing_matches_gelu_then_linear(autocast):
    torch.manual_seed(0)
    ref = nn.Sequential(nn.GELU(), nn.Linear(24, 40))
    ours = GeluLinear(24, 40, recompute=True)
    ours.load_state_dict(ref[1].state_dict())
    dtype = torch.float32 if autocast else torch.float64
    ref.to(dtype), ours.to(dtype)
    x = torch.randn(2, 5, 7, 24, dtype=dtype)
    grad = torch.randn(2, 5, 7, 40, dtype=dtype)

    def run(layer):
        x_ = x.detach().requires_grad_()
        layer.zero_grad(set_to_none=True)
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):
            out = layer(x_)
        out.backward(grad.to(out.dtype))
        weight = layer[1] if isinstance(layer, nn.Sequential) else layer
        return out, x_.grad, weight.weight.grad, weight.bias.grad

    for a, b in zip(run(ours), run(ref)):
        assert a.dtype == b.dtype
        # bf16 products under autocast: the same ops, the same roundings.
        tol = dict(rtol=1e-2, atol=1e-2) if autocast else dict(rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(a, b, **tol)


def _hidden_maps_kept(layer, x):
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(
            lambda t: saved.append(t) or t, lambda t: t):
        layer(x)
    return sum(t.numel() == x.numel() for t in saved)


def test_gelu_linear_keeps_the_hidden_map_once():
    x = torch.randn(4, 6, 24, requires_grad=True)
    ref = nn.Sequential(nn.GELU(), nn.Linear(24, 40))
    assert _hidden_maps_kept(ref, x) == 2  # GELU's input and its output
    assert _hidden_maps_kept(GeluLinear(24, 40, recompute=True), x) == 1
    with torch.no_grad():
        layer = GeluLinear(24, 40)
        layer.load_state_dict(ref[1].state_dict())
        torch.testing.assert_close(layer(x), ref(x))  # recompute=False: the plain path


@pytest.mark.parametrize('mode', ['gelu', 'mlp'])
def test_backbone_recomputing_equals_keeping(mode):
    from mmbiformer.models import BiFormer
    from helpers import TINY_ARCH
    torch.manual_seed(0)
    ref = BiFormer(TINY_ARCH, n_win=2).double().train()
    ours = BiFormer(TINY_ARCH, n_win=2, mlp_recompute=mode).double().train()
    assert ours.state_dict().keys() == ref.state_dict().keys()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 64, 64, dtype=torch.double)
    outs = []
    for m in (ours, ref):
        y = m(x)
        sum((o * torch.arange(o.numel(), dtype=o.dtype).view_as(o).sin()).sum()
            for o in y).backward()
        outs.append([o.detach() for o in y] + [p.grad for p in m.parameters()])
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def _kept_bytes(model, x):
    kept = {}  # by storage: a tensor saved by two ops counts once

    def pack(t):
        kept[t.data_ptr()] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return sum(kept.values())


def test_backbone_modes_keep_less():
    from mmbiformer.models import BiFormer
    from helpers import TINY_ARCH
    x = torch.randn(1, 3, 64, 64)
    kept = {mode: _kept_bytes(
        BiFormer(TINY_ARCH, n_win=2, mlp_recompute=mode).train(), x)
            for mode in (None, 'gelu', 'mlp')}
    assert kept[None] > kept['gelu'] > kept['mlp'], kept
    with pytest.raises(ValueError, match="mlp_recompute must be one of"):
        BiFormer(TINY_ARCH, n_win=2, mlp_recompute="all")
