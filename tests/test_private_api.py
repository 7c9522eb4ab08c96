"""The private names of mmengine and torch that the engine reaches (through
``mmbiformer/private_api.py``), checked against the installed versions: a
version that renames or changes one fails here, by name."""
import inspect
import warnings

import pytest
import torch
from mmengine.model import BaseModel
from mmengine.optim import OptimWrapper

from mmbiformer import private_api as api


def test_optim_wrapper_books():
    model = torch.nn.Linear(2, 2)
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1), accumulative_counts=3)
    assert api.accumulative_counts(wrapper) == 3
    assert api.accumulative_counts(OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))) == 1
    before = wrapper._inner_count
    api.count_step(wrapper)
    assert wrapper._inner_count == before + 1
    # backward() counts the same way: the captured step stands in for it.
    assert 'self._inner_count += 1' in inspect.getsource(OptimWrapper.backward)


@pytest.mark.parametrize('loss_scale, expected', [(512., 512.), ('dynamic', None)])
def test_amp_wrapper_scale_update(monkeypatch, loss_scale, expected):
    import mmengine.optim.optimizer.amp_optimizer_wrapper as amp
    monkeypatch.setattr(amp, 'is_cuda_available', lambda: True)  # built on a CPU machine
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        wrapper = amp.AmpOptimWrapper(
            optimizer=torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1),
            loss_scale=loss_scale)
    assert api.scale_update_param(wrapper) == expected
    assert 'update(self._scale_update_param)' in inspect.getsource(amp.AmpOptimWrapper.step)


def test_run_forward_is_train_steps_forward():
    class Model(BaseModel):
        def forward(self, x, mode='tensor'):
            return {'loss': x.sum()} if mode == 'loss' else x

    model = Model()
    x = torch.ones(2)
    assert api.run_forward(model, dict(x=x))['loss'].item() == 2
    assert torch.equal(api.run_forward(model, (x, ), mode='tensor'), x)
    assert '_run_forward(data, mode=' in inspect.getsource(BaseModel.train_step)


def test_grad_scaler_privates():
    optimizer = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters())
    api.let_scaler_hand_over_found_inf(optimizer)
    assert '_step_supports_amp_scaling' in inspect.getsource(torch.amp.GradScaler.step)
    assert optimizer._step_supports_amp_scaling
    scaler = torch.amp.GradScaler('cpu')
    scaler._per_optimizer_states[id(optimizer)]['stage'] = 'stepped'
    api.reset_scaler_step_state(scaler)
    fresh = torch.amp.grad_scaler._refresh_per_optimizer_state()
    assert dict(scaler._per_optimizer_states) == {}
    assert scaler._per_optimizer_states[id(optimizer)] == fresh


def test_foreach_ops_match_loops():
    torch.manual_seed(0)
    a, b = [torch.randn(3), torch.randn(2, 2)], [torch.randn(3), torch.randn(2, 2)]
    lerped = [x.lerp(y, 0.25) for x, y in zip(a, b)]
    norms = [x.norm() for x in a]
    assert all(torch.equal(n, m) for n, m in zip(api.foreach_norm(a), norms))
    api.foreach_lerp_(a, b, 0.25)
    assert all(torch.equal(x, y) for x, y in zip(a, lerped))
    api.foreach_copy_(a, b)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_parameter_slots():
    layer = torch.nn.Linear(2, 2)
    names = [name for name, _ in api.module_parameters(layer)]
    assert names == ['weight', 'bias']
    stand_in = torch.zeros(2, 2, requires_grad=True)
    original = layer.weight
    api.set_module_parameter(layer, 'weight', stand_in)
    assert layer.weight is stand_in and layer(torch.ones(1, 2)).sub(layer.bias).abs().sum() == 0
    api.set_module_parameter(layer, 'weight', original)
    assert layer.weight is original


def test_pool_routing_bindings():
    """``holding_graph_pool`` reaches torch's allocator bindings (present, as stand-ins,
    in CPU builds too); on a GPU an allocation comes from the pool while routed, from
    the default pool after ``stop_routing``, and a graph captured inside keeps the pool
    usable after the block."""
    for name in ('_cuda_beginAllocateToPool', '_cuda_endAllocateToPool',
                 '_cuda_releasePool'):
        assert hasattr(torch._C, name), name
    if not torch.cuda.is_available():
        return
    pool = torch.cuda.graph_pool_handle()
    graph = torch.cuda.CUDAGraph()
    with api.holding_graph_pool(pool, torch.device('cuda')) as stop_routing:
        inside = torch.empty(1 << 20, device='cuda')
        stop_routing()
        outside = torch.empty(1 << 20, device='cuda')
        with torch.cuda.graph(graph, pool=pool):
            captured = inside * 2
    segments = torch.cuda.memory_snapshot()

    def pool_of(t):
        return next(tuple(s['segment_pool_id']) for s in segments
                    if s['address'] <= t.data_ptr() < s['address'] + s['total_size'])

    assert pool_of(inside) == tuple(pool) == pool_of(captured)
    assert pool_of(outside) == (0, 0)
    with api.holding_graph_pool(pool, torch.device('cuda')):  # still held by the graph
        again = torch.empty(1 << 20, device='cuda')
    assert torch.cuda.memory_snapshot() and again.data_ptr() != inside.data_ptr()
    del graph, captured


def test_batches_copied_without_waiting():
    from mmengine.model import BaseDataPreprocessor
    preprocessor = BaseDataPreprocessor()
    api.copy_batches_without_waiting(preprocessor)
    assert preprocessor._non_blocking is True
    assert 'non_blocking=self._non_blocking' in inspect.getsource(
        BaseDataPreprocessor.cast_data)


def test_dispatch_watch_sees_casts_and_hooks_are_found():
    layer = torch.nn.Linear(2, 2)
    seen = []
    with api.dispatch_watch(lambda func, tensors, kwargs: seen.append(
            (str(func), any(t is layer.weight for t in tensors), kwargs.get('dtype')))):
        with torch.autocast('cpu', dtype=torch.bfloat16):
            layer(torch.randn(3, 2))
    assert ('aten._to_copy.default', True, torch.bfloat16) in seen
    assert not api.has_hooks(layer.weight)
    layer.weight.register_hook(lambda g: g)
    assert api.has_hooks(layer.weight)


def test_saved_tensors_hooks_in_effect_is_the_innermost_pair():
    assert api.saved_tensors_hooks_in_effect() is None
    pair = (lambda t: t, lambda t: t)
    with torch.autograd.graph.saved_tensors_hooks(*pair):
        assert api.saved_tensors_hooks_in_effect() == pair
    assert api.saved_tensors_hooks_in_effect() is None
