"""The fast BRA path against the reference path (the specification).

CPU cases run everywhere (CI); the CUDA cases run where a GPU is present (the device
runs them with ``python3 -m pytest -q tests/test_bra_fast.py``).
"""
import pytest
import torch

from mmbiformer.ops import bra as bra_module
from mmbiformer.ops.bra import BiLevelRoutingAttention

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')

# (H, W, n_win, topk, soft_routing, kv_downsample_mode): dense-masked and gathered
# branches, padding, soft routing, KV pooling.
CASES = [(14, 14, 7, 4, False, 'identity'), (56, 56, 7, 1, False, 'identity'),
         (13, 9, 4, 3, False, 'identity'), (64, 64, 8, 5, False, 'identity'),
         (40, 48, 4, 3, True, 'identity'), (64, 64, 4, 2, False, 'ada_avgpool')]


def _op(H, W, n_win, topk, soft, mode, impl='reference', dim=32, heads=4):
    torch.manual_seed(0)
    return BiLevelRoutingAttention(dim, heads, n_win=n_win, topk=topk, side_dwconv=5,
                                   auto_pad=True, soft_routing=soft, kv_downsample_mode=mode,
                                   kv_per_win=2, attn_impl=impl)


def _fwd_bwd(op, x, grad):
    x = x.detach().requires_grad_()
    op.zero_grad(set_to_none=True)
    out = op(x)
    out.backward(grad)
    return out.detach(), x.grad, [p.grad for p in op.parameters()]


def _compare(op, x, rtol, atol):
    grad = torch.randn(x.shape, dtype=x.dtype, device=x.device)
    op.attn_impl = 'reference'
    ref = _fwd_bwd(op, x, grad)
    op.attn_impl = 'fast'
    fast = _fwd_bwd(op, x, grad)
    torch.testing.assert_close(fast[0], ref[0], rtol=rtol, atol=atol)
    torch.testing.assert_close(fast[1], ref[1], rtol=rtol, atol=atol)
    for a, b in zip(fast[2], ref[2]):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


@pytest.mark.parametrize('case', CASES)
def test_fast_matches_reference_cpu(case):
    op = _op(*case).double()
    _compare(op, torch.randn(2, case[0], case[1], 32, dtype=torch.double), 1e-10, 1e-10)


@pytest.mark.parametrize('dense', [True, False])
def test_both_fast_branches_are_exercised(dense, monkeypatch):
    calls = []
    real = bra_module._use_dense
    monkeypatch.setattr(bra_module, '_use_dense',
                        lambda *a: calls.append(real(*a)) or real(*a))
    H = 14 if dense else 56
    topk = 4 if dense else 1
    op = _op(H, H, 7, topk, False, 'identity', impl='fast')
    op(torch.randn(1, H, H, 32))
    assert calls == [dense]


def test_recompute_keeps_gradients(monkeypatch):
    op = _op(64, 64, 8, 5, False, 'identity').double()
    x = torch.randn(1, 64, 64, 32, dtype=torch.double)
    monkeypatch.setattr(bra_module, 'RECOMPUTE_ROUTED_KV', False)
    _compare(op, x, 1e-10, 1e-10)


def test_auto_picks_reference_on_cpu(monkeypatch):
    op = _op(14, 14, 7, 4, False, 'identity', impl='auto')
    monkeypatch.setattr(bra_module, 'routed_attention',
                        lambda *a: pytest.fail('fast path used on CPU'))
    op(torch.randn(1, 14, 14, 32))


def test_bad_attn_impl():
    with pytest.raises(ValueError, match='attn_impl must be one of'):
        BiLevelRoutingAttention(32, 4, attn_impl='flash')


@cuda
@pytest.mark.parametrize('case', CASES)
def test_fast_matches_reference_cuda_fp32(case, monkeypatch):
    monkeypatch.setattr(torch.backends.cuda.matmul, 'allow_tf32', False)
    monkeypatch.setattr(torch.backends.cudnn, 'allow_tf32', False)
    op = _op(*case).cuda()
    x = torch.randn(2, case[0], case[1], 32, device='cuda')
    _compare(op, x, 1e-4, 1e-5)


@cuda
@pytest.mark.parametrize('case', [(56, 56, 7, 1, False, 'identity'),
                                  (64, 64, 8, 5, False, 'identity'),
                                  (14, 14, 7, 4, False, 'identity')])
def test_fast_bf16_within_reference_error(case):
    """Under bf16 autocast, the fast path is no further from fp64 than the reference."""
    op = _op(*case, dim=64, heads=2).cuda()
    x = torch.randn(4, case[0], case[1], 64, device='cuda')
    exact = op.double()(x.double()).float()
    op.float()
    errs = {}
    for impl in ('reference', 'fast'):
        op.attn_impl = impl
        with torch.autocast('cuda', dtype=torch.bfloat16):
            out = op(x).float()
        errs[impl] = ((out - exact).norm() / exact.norm()).item()
    # bf16 rounding of q/k/v, attention and LCE: a few percent of the output norm.
    assert errs['fast'] < 5e-2, errs
    assert errs['fast'] <= 1.5 * errs['reference'] + 1e-3, errs


@cuda
def test_fast_is_deterministic_cuda(monkeypatch):
    monkeypatch.setenv('CUBLAS_WORKSPACE_CONFIG', ':4096:8')
    torch.use_deterministic_algorithms(True)
    try:
        for case in [(56, 56, 7, 1, False, 'identity'), (64, 64, 8, 5, False, 'identity'),
                     (14, 14, 7, 4, False, 'identity')]:
            op = _op(*case, impl='fast').cuda()
            x = torch.randn(2, case[0], case[1], 32, device='cuda')
            grad = torch.randn_like(x)
            first, second = _fwd_bwd(op, x, grad), _fwd_bwd(op, x, grad)
            assert torch.equal(first[0], second[0])
            assert torch.equal(first[1], second[1])
            assert all(torch.equal(a, b) for a, b in zip(first[2], second[2]))
    finally:
        torch.use_deterministic_algorithms(False)


@cuda
def test_backbone_fast_matches_reference_cuda_fp32(monkeypatch):
    from mmbiformer.models import BiFormer
    monkeypatch.setattr(torch.backends.cuda.matmul, 'allow_tf32', False)
    monkeypatch.setattr(torch.backends.cudnn, 'allow_tf32', False)
    torch.manual_seed(0)
    model = BiFormer('small', n_win=16, attn_impl='reference').cuda().eval()
    x = torch.randn(1, 3, 336, 496, device='cuda')
    with torch.no_grad():
        ref = model(x)
        for m in model.modules():
            if isinstance(m, BiLevelRoutingAttention):
                m.attn_impl = 'fast'
        fast = model(x)
    for a, b in zip(fast, ref):
        assert ((a - b).norm() / b.norm()).item() < 1e-4
