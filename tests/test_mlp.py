"""The MLP with GELU inside the second layer's products (ops/backends/triton/mlp.py;
on a CPU in Triton's interpreter, fp16; on CUDA in bf16 and fp16) against the same
maths in float64 by PyTorch's ops (``F.linear``, ``F.gelu``); what it keeps for the
backward; and ``Mlp`` taking it only where the policy says so, with the official keys."""
import pytest
import torch
import torch.nn.functional as F

from mmbiformer.ops import mlp as mlp_module
from mmbiformer.ops.backends.triton import unavailable_reason
from mmbiformer.ops.mlp import Mlp

from helpers import requires_cuda

CPU = torch.device('cpu')
DEVICES = [pytest.param(CPU, torch.float16, id='cpu-fp16', marks=pytest.mark.skipif(
    unavailable_reason(CPU) is not None, reason=f'Triton on CPU: {unavailable_reason(CPU)}'))]
DEVICES += [pytest.param(torch.device('cuda'), dtype, id=f'cuda-{name}', marks=requires_cuda)
            for dtype, name in ((torch.bfloat16, 'bf16'), (torch.float16, 'fp16'))]


def _weights(C, hidden, device, gen):
    def rand(*s, scale=1.):
        return (torch.randn(*s, generator=gen) * scale).to(device)
    return (rand(hidden, C, scale=C ** -0.5), rand(hidden), rand(C, hidden, scale=hidden ** -0.5),
            rand(C))


def _relative_errors(got, expected):
    return [((a.double() - b).abs().max() / b.abs().max()).item()
            for a, b in zip(got, expected)]


@pytest.mark.parametrize('device, dtype', DEVICES)
@pytest.mark.parametrize('tokens, C, recompute_fc1', [(70, 32, False), (45, 48, True)])
def test_gelu_mlp_matches_the_ops_in_float64(device, dtype, tokens, C, recompute_fc1):
    """48 channels: a hidden width (144) that is no multiple of the kernels' K tile."""
    from mmbiformer.ops.backends.triton.mlp import gelu_mlp
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, tokens, C, generator=gen).to(device, dtype).requires_grad_()
    params = [t.requires_grad_() for t in _weights(C, 3 * C, device, gen)]
    y = gelu_mlp(x, *params, recompute_fc1=recompute_fc1)
    grad = torch.randn(y.shape, generator=gen).to(device, dtype)
    got = (y, *torch.autograd.grad(y, (x, *params), grad))
    assert y.dtype == dtype and [g.dtype for g in got[1:]] == [dtype] + [torch.float32] * 4
    # The reference sees the same rounded inputs (weights cast as autocast would).
    ref = [t.detach().to(dtype).double().requires_grad_() for t in (x, *params)]
    y_ref = F.linear(F.gelu(F.linear(ref[0], ref[1], ref[2])), ref[3], ref[4])
    expected = (y_ref, *torch.autograd.grad(y_ref, ref, grad.double()))
    errors = _relative_errors(got, expected)
    # Half-precision products and one rounding of the hidden map each way.
    limit = 2e-2 if dtype == torch.bfloat16 else 3e-3
    assert max(errors) < limit, errors


@pytest.mark.parametrize('device, dtype', DEVICES[:1])
def test_gelu_mlp_keeps_one_hidden_map_or_none(device, dtype):
    from mmbiformer.ops.backends.triton.mlp import gelu_mlp
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 20, 16, generator=gen).to(device, dtype).requires_grad_()
    params = [t.requires_grad_() for t in _weights(16, 48, device, gen)]

    def hidden_maps_kept(**kwargs):
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t,
                                                      lambda t: t):
            gelu_mlp(x, *params, **kwargs)
        return sum(t.numel() == 3 * x.numel() for t in saved)

    assert hidden_maps_kept() == 1  # the first layer's output, not GELU's
    assert hidden_maps_kept(recompute_fc1=True) == 0


def test_mlp_keys_and_choice(monkeypatch):
    """Official keys in both forms; the fused op only where ``mlp_runs_triton`` says
    (never on a CPU tensor, as in every test here), else the modules."""
    x = torch.randn(3, 8)
    for gelu_recompute in (False, True):
        mlp = Mlp(8, 24, gelu_recompute=gelu_recompute)
        assert set(mlp.state_dict()) == {'0.weight', '0.bias', '3.weight', '3.bias'}
        assert not mlp.runs_fused(x)
        expected = F.linear(F.gelu(F.linear(x, mlp[0].weight, mlp[0].bias)), mlp[3].weight,
                            mlp[3].bias)
        torch.testing.assert_close(mlp(x), expected)
    calls = []
    monkeypatch.setattr(mlp_module, 'mlp_runs_triton', lambda x, policy: True)  # a CUDA call
    from mmbiformer.ops.backends.triton import mlp as fused
    monkeypatch.setattr(fused, 'gelu_mlp', lambda *a: calls.append(a) or a[0])
    mlp(x, recompute_fc1=True)
    assert len(calls) == 1 and calls[0][-1] is True and calls[0][1] is mlp[0].weight


@requires_cuda
@pytest.mark.parametrize('mlp_recompute', [None, 'mlp'])
def test_backbone_with_the_fused_mlp_matches_the_modules(mlp_recompute):
    """A captured step's kernels (bf16 autocast) with and without the fused MLP: the
    same outputs and gradients up to bf16 rounding, for each recompute mode."""
    from mmbiformer.models import BiFormer
    from mmbiformer.ops.policy import captured_step, runtime_policy
    from helpers import TINY_ARCH
    torch.manual_seed(0)
    model = BiFormer(TINY_ARCH, n_win=2, mlp_recompute=mlp_recompute).cuda()
    x = torch.randn(2, 3, 64, 64, device='cuda')
    results = []
    for fused in (True, False):
        model.zero_grad(set_to_none=True)
        with captured_step(), runtime_policy(gelu_mlp=fused):
            with torch.autocast('cuda', dtype=torch.bfloat16):
                assert model.stages[0][0].mlp.runs_fused(x) is fused
                outs = model(x)
            sum((o.float() * torch.arange(o.numel(), device='cuda').view_as(o).sin()).sum()
                for o in outs).backward()
        results.append(([o.float() for o in outs],
                        {n: p.grad.float() for n, p in model.named_parameters()}))

    def rel(a, b):
        return ((a - b).norm() / b.norm()).item()

    (outs, grads), (ref_outs, ref_grads) = results
    assert max(rel(a, b) for a, b in zip(outs, ref_outs)) < 2e-2
    # The MLPs' own gradients closely; all gradients together within bf16's noise (a
    # near-cancelling sum deep in the backward, e.g. a stem BatchNorm's bias gradient,
    # can differ by more than its own size between two roundings).
    assert max(rel(grads[n], ref_grads[n]) for n in grads if '.mlp.' in n) < 5e-2
    assert rel(torch.cat([g.flatten() for g in grads.values()]),
               torch.cat([g.flatten() for g in ref_grads.values()])) < 5e-2
