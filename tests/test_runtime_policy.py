"""The ops' runtime policy: set in a block, for a run, from a config; checked."""
import re
from types import SimpleNamespace

import pytest
import torch

from mmbiformer.engine import RuntimePolicyHook
from mmbiformer.ops import policy
from mmbiformer.ops.backends import choose
from mmbiformer.ops.layer_norm import LayerNorm


def bra_backend(impl, device, kv_downsample_mode, soft_routing, grad=False, geometry=None):
    """The chooser with the policy in effect, as the op asks it."""
    return choose.choose_backend(impl, device, kv_downsample_mode, soft_routing, grad,
                                 geometry, policy.current_policy())


def test_block_sets_and_restores():
    before = policy.current_policy()
    with policy.runtime_policy(layer_norm_triton_min_elements=0) as inside:
        assert policy.current_policy() is inside
        assert inside.layer_norm_triton_min_elements == 0 and not inside.captured
        with policy.captured_step():  # keeps the other switches
            assert policy.in_captured_step()
            assert policy.current_policy().layer_norm_triton_min_elements == 0
        assert not policy.in_captured_step()
    assert policy.current_policy() == before


@pytest.mark.parametrize('changes, message', [
    (dict(layer_norm_triton_min=0), r"unknown switches \['layer_norm_triton_min'\]"),
    (dict(bra_triton_train_min_tokens=-1), 'must be an int >= 0'),
    (dict(layer_norm_triton_min_elements=True), 'must be an int >= 0'),
    (dict(captured='yes'), 'captured must be a bool')])
def test_bad_switches_are_named(changes, message):
    with pytest.raises(ValueError, match=message):
        policy.set_runtime_policy(**changes)
    with pytest.raises(ValueError, match=message):
        with policy.runtime_policy(**changes):
            pass


def test_ops_follow_the_policy_on_cpu():
    """Off CUDA every op runs PyTorch's kernels, whatever the policy says; the BRA
    chooser reads the captured switch for training on CUDA."""
    x = torch.randn(2, 8, 8, 16)
    with policy.runtime_policy(captured=True, layer_norm_triton_min_elements=0):
        assert not choose.layer_norm_runs_triton(x, policy.current_policy())
        assert not choose.dwconv_runs_triton('triton', x, torch.randn(16, 1, 3, 3),
                                          policy.current_policy())
        norm = LayerNorm(16)
        torch.testing.assert_close(norm(x), torch.nn.functional.layer_norm(
            x, (16, ), norm.weight, norm.bias, norm.eps))
    gpu = torch.device('cuda')
    geometry = (56, 56, 64, 4)  # 64-token regions: Triton trains there when captured
    assert bra_backend('auto', gpu, 'identity', False, True, geometry) == 'sdpa'
    with policy.runtime_policy(bra_triton_train_min_tokens=128), policy.captured_step():
        assert bra_backend('auto', gpu, 'identity', False, True, geometry) == 'sdpa'


def test_compiled_code_takes_the_compile_choices(monkeypatch):
    """Inside ``torch.compile`` the chooser keeps the Triton BRA kernels in captured
    training, though torch 2.11 answers ``is_exporting()`` True there (a compiled
    model ran the reference attention), and ``Linear``'s bias gradient is autograd's;
    a real export (outside dynamo) still counts as tracing."""
    monkeypatch.setattr(policy, '_exporting', lambda: True)  # torch 2.11's answer
    seen = []

    def choose(x):
        seen.append((policy.tracing(), policy.linear_bias_grad_as_mv(True),
                     bra_backend('auto', torch.device('cuda'), 'identity', False, True,
                                 (56, 56, 64, 1))))
        return x + 1

    with policy.captured_step():
        torch.compile(choose, backend='eager', fullgraph=True)(torch.zeros(2))
        assert seen == [(False, False, 'triton')]
        assert policy.linear_bias_grad_as_mv(True)  # not compiling
    assert policy.tracing()  # as torch.export answers outside dynamo
    monkeypatch.undo()

    class Recorded(torch.nn.Module):
        def forward(self, x):
            seen.append(policy.tracing())
            return x + 1

    seen.clear()
    torch.export.export(Recorded(), (torch.zeros(2), ))  # non-strict, torch's default
    assert seen == [True]


def test_hook_holds_the_switches_for_the_run():
    runner = SimpleNamespace(logger=SimpleNamespace(info=lambda msg: None))
    hook = RuntimePolicyHook(layer_norm_triton_min_elements=5)
    before = policy.current_policy()
    hook.before_run(runner)
    assert policy.current_policy().layer_norm_triton_min_elements == 5
    hook.after_run(runner)
    assert policy.current_policy() == before
    with pytest.raises(ValueError, match='unknown switches'):
        RuntimePolicyHook(min_elements=5)
    with pytest.raises(ValueError, match='set by the engine'):
        RuntimePolicyHook(captured=True)


@pytest.mark.parametrize('capability, version, reason', [
    ((6, 1), '3.6.0', 'compute capability 6.1 is below 7.0'),
    ((9, 0), '3.2.0', r'Triton 3.2.0 is outside the releases the kernels are checked with '
                      r'\(3.6 to 3.6.x\)'),
    ((6, 1), '3.6.0+git1234', None)])  # with MMBIFORMER_TRITON_UNCHECKED=1
def test_unchecked_gpu_or_triton_takes_pytorch_kernels_and_says_so_once(
        monkeypatch, capability, version, reason):
    """On a GPU (a stand-in capability) or a Triton the kernels are not checked with,
    the chooser takes PyTorch's kernels and one log line names the GPU and the reason;
    ``attn_impl='triton'`` is refused with it; the environment switch overrides."""
    import mmengine.logging

    import mmbiformer.ops.backends.triton as backend
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'current_device', lambda: 0)
    monkeypatch.setattr(torch.cuda, 'get_device_capability', lambda i=None: capability)
    monkeypatch.setattr(torch.cuda, 'get_device_name', lambda i=None: 'Tesla P100')
    monkeypatch.setattr(backend.triton, '__version__', version)
    monkeypatch.setattr(backend, '_cuda_reasons', {})
    if reason is None:
        monkeypatch.setenv('MMBIFORMER_TRITON_UNCHECKED', '1')
    logged = []
    monkeypatch.setattr(mmengine.logging, 'print_log', lambda msg, **kw: logged.append(msg))
    gpu = torch.device('cuda')
    for _ in range(3):
        got = bra_backend('auto', gpu, 'identity', False)
        assert got == ('triton' if reason is None else 'sdpa')
    if reason is None:
        assert not logged and backend.unavailable_reason(gpu) is None
        return
    assert len(logged) == 1, logged
    assert 'Triton kernels off on cuda:0 (Tesla P100)' in logged[0]
    assert 'MMBIFORMER_TRITON_UNCHECKED=1' in logged[0]
    assert re.search(reason, logged[0]), logged[0]
    with pytest.raises(ValueError, match=reason):
        bra_backend('triton', gpu, 'identity', False)


def test_the_policy_imports_no_backend():
    """The choices live beside the backends (``ops/backends/choose.py``) and read the
    policy; the policy module imports no backend (no loop between the two)."""
    import ast
    import inspect
    tree = ast.parse(inspect.getsource(policy))
    imported = [node.module or '' for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom)]
    imported += [a.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for a in node.names]
    assert not [m for m in imported if 'backends' in m], imported
