"""ops/linear.py: in a captured step its gradients are autograd's (re-stated by
``nn.Linear``), under autocast too; outside one it is ``nn.Linear``."""
import pytest
import torch
import torch.nn as nn

from mmbiformer.ops.backends import captured_step
from mmbiformer.ops.linear import Linear


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
