"""BiFormer's backbone replayed as CUDA graphs per input size (a ``BackboneRuntime``
attached from outside, by ``BackboneRuntimeHook`` in the configs:
mmbiformer/engine/backbone_runtime.py runs mmbiformer/engine/shape_graphs.py).

CPU: the options' errors, the hook and the old options' deprecation, copies and pickles
of a backbone with a runtime, the output sizes the crop uses against the eager outputs,
and the CPU / inference fallbacks. CUDA: the replayed forward and backward against eager
passes of the same module with the same kernels (inside ``captured_step()``) at
several sizes, padded to a bucket and cropped back; gradients that accumulate; running
statistics updated once per iteration; sizes beyond ``max_graphs`` run eagerly."""
import copy
import pickle
import types
import warnings

import pytest
import torch
from mmengine.config import Config

from mmbiformer.engine import BackboneRuntimeHook
from mmbiformer.engine.backbone_runtime import BackboneRuntime, network_forward, runtime_of
from mmbiformer.engine.backbone_runtime_hook import configured_runtime
from mmbiformer.models import BiFormer
from mmbiformer.ops.linear import GeluLinear
from mmbiformer.ops.policy import captured_step
from helpers import TINY_ARCH, requires_cuda


def tiny(cuda_graph=False, compile=False, mlp_recompute=None, **kwargs):
    torch.manual_seed(0)
    model = BiFormer(TINY_ARCH, n_win=2, mlp_recompute=mlp_recompute, **kwargs)
    BackboneRuntime(cuda_graph=cuda_graph, compile=compile).attach(model)
    return model


@pytest.mark.parametrize('cfg, message', [
    ('yes', 'must be a bool or a dict'),
    (dict(size=32), "unknown keys ['size']"),
    (dict(size_divisor=0), 'size_divisor must be a positive int'),
    (dict(max_graphs=0), 'max_graphs must be an int >= 1'),
    (dict(inference_graphs=-1), 'inference_graphs must be an int >= 0'),
])
def test_bad_options_are_named(cfg, message):
    with pytest.raises(ValueError, match=message.replace('[', r'\[').replace(']', r'\]')):
        tiny(cuda_graph=cfg)
    with pytest.raises(ValueError, match=message.replace('[', r'\[').replace(']', r'\]')):
        BackboneRuntimeHook(cuda_graph=cfg)  # when the config's hooks are built


def test_not_with_random_checkpointing_or_compile():
    assert runtime_of(tiny(cuda_graph=True, with_cp=[0])).cuda_graph is not None  # no RNG
    random = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match=r"Linear lacks \['output_sizes', 'in_channels'\]"):
        BackboneRuntime(cuda_graph=True).attach(random)
    BackboneRuntime(compile=True).attach(random)  # any module compiles
    random.recomputes_randomly, random.output_sizes, random.in_channels = True, None, 2
    with pytest.raises(ValueError, match='with_cp on blocks with dropout inside'):
        BackboneRuntime(cuda_graph=True).attach(random)
    with pytest.raises(ValueError, match='compile'):
        tiny(cuda_graph=True, compile=True)


def test_the_backbone_is_the_network():
    """Built alone, BiFormer runs its own forward: no runtime, nothing of the engine."""
    model = BiFormer(TINY_ARCH, n_win=2)
    assert runtime_of(model) is None and 'forward' not in vars(model)
    attached = BackboneRuntime(cuda_graph=True).attach(model)
    assert runtime_of(model) is attached
    x = torch.randn(1, 3, 40, 50)
    with torch.no_grad():  # CPU: the runtime runs the network itself
        for got, want in zip(model(x), network_forward(model)(x)):
            torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_old_runtime_arguments_still_work_and_say_what_to_write():
    with pytest.raises(ValueError, match=r"runtime: unknown keys \['graphs'\]"):
        BiFormer(TINY_ARCH, runtime=dict(graphs=True))
    with pytest.raises(ValueError, match=r"unexpected arguments \['cuda_graphs'\]"):
        BiFormer(TINY_ARCH, cuda_graphs=True)
    # runtime= and the options BiFormer took before it: attached, with a warning that
    # names the hook and its arguments.
    with pytest.warns(FutureWarning, match=r"custom_hooks = \[dict\(type='BackboneRuntimeHook', "
                      r"compile=False, cuda_graph=\{'size_divisor': 64\}\)\]"):
        old = BiFormer(TINY_ARCH, n_win=2, runtime=dict(compile=False),
                       cuda_graph=dict(size_divisor=64), mlp_recompute='gelu')
    assert runtime_of(old).options() == dict(
        cuda_graph=dict(size_divisor=64, max_graphs=16, warmup=1, inference_graphs=0),
        compile=False)
    assert isinstance(old.stages[0][0].mlp[3], GeluLinear)
    # ``runtime=dict(mlp_recompute=...)``: out of the runtime, onto the network.
    with pytest.warns(FutureWarning, match=r'write BiFormer\(mlp_recompute=\.\.\.\), '
                      r'beside with_cp'):
        old = BiFormer(TINY_ARCH, n_win=2, runtime=dict(mlp_recompute='gelu'))
    assert isinstance(old.stages[0][0].mlp[3], GeluLinear)
    assert runtime_of(old) is None
    with pytest.raises(ValueError, match='disagree'):
        BiFormer(TINY_ARCH, mlp_recompute='mlp', runtime=dict(mlp_recompute='gelu'))


def _runner(model):
    return types.SimpleNamespace(model=types.SimpleNamespace(module=model))  # DDP-like


def test_the_hook_attaches_the_configs_runtime_to_the_backbone(capsys):
    model = types.SimpleNamespace(backbone=BiFormer(TINY_ARCH, n_win=2))
    hook = BackboneRuntimeHook(cuda_graph=dict(size_divisor=128))
    hook.before_run(_runner(model))
    runtime = runtime_of(model.backbone)
    assert runtime.cuda_graph['size_divisor'] == 128 and runtime.compile is None
    hook.before_run(_runner(model))  # train, then test: the graphs stay
    assert runtime_of(model.backbone) is runtime
    BackboneRuntimeHook(compile=True).before_run(_runner(model))  # another one replaces it
    assert runtime_of(model.backbone).compile == {}
    with pytest.raises(ValueError, match='has none: remove the hook'):
        BackboneRuntimeHook(cuda_graph=True).before_run(_runner(torch.nn.Linear(2, 2)))


def test_configs_give_their_runtime_through_the_hook():
    det = Config.fromfile('configs/det/maskrcnn_biformer_s.py')
    assert 'runtime' not in det.model.backbone
    assert configured_runtime(det)['cuda_graph'] == dict(
        size_divisor=128, max_graphs=16, warmup=1, inference_graphs=64)
    assert [h['type'] for h in det.custom_hooks] == ['BackboneRuntimeHook', 'CaptureAheadHook']
    seg = Config.fromfile('configs/seg/upernet_biformer_t.py')
    assert configured_runtime(seg)['cuda_graph']['size_divisor'] is None
    shunted = Config.fromfile('configs/det/ablation/maskrcnn_biformer_s_shunted.py')
    assert configured_runtime(shunted) == dict(cuda_graph=False, compile=False)
    # --cfg-options custom_hooks.0.cuda_graph=False, as the docs say
    det.merge_from_dict({'custom_hooks.0.cuda_graph': False}, allow_list_keys=True)
    assert configured_runtime(det) == dict(cuda_graph=False, compile=False)
    # A config of earlier versions: the backbone's runtime.
    old = Config(dict(model=dict(backbone=dict(type='BiFormer', runtime=dict(compile=True)))))
    assert configured_runtime(old) == dict(cuda_graph=False, compile={})


def test_test_tool_adds_inference_graphs_to_any_config():
    """``tools/test.py --cuda-graph``: the config's runtime hook gets inference graphs,
    or the config gets one such hook; a compiled backbone is refused."""
    from mmbiformer.engine.backbone_runtime_hook import with_inference_graphs
    cls = Config.fromfile('configs/cls/biformer_s_in1k.py')
    with_inference_graphs(cls)
    assert configured_runtime(cls)['cuda_graph']['inference_graphs'] == 64
    assert [h['type'] for h in cls.custom_hooks][-1] == 'BackboneRuntimeHook'
    seg = Config.fromfile('configs/seg/upernet_biformer_s.py')
    with_inference_graphs(seg)
    assert configured_runtime(seg)['cuda_graph'] == dict(
        size_divisor=None, max_graphs=16, warmup=1, inference_graphs=64)
    compiled = Config(dict(custom_hooks=[dict(type='BackboneRuntimeHook', compile=True)]))
    with pytest.raises(ValueError, match='compiles its backbone'):
        with_inference_graphs(compiled)


def test_a_copied_model_gets_a_runtime_of_its_own():
    """mmengine's EMA deep-copies the model: the copy gets the options, and graphs of
    its own (a runtime's graphs hold one module's parameters)."""
    model = tiny(cuda_graph=dict(size_divisor=64))
    x = torch.randn(2, 3, 64, 64)
    model(x)
    copied = copy.deepcopy(model)
    assert runtime_of(copied) is not runtime_of(model)
    assert runtime_of(copied).options() == runtime_of(model).options()
    assert vars(copied)['forward'].module() is copied
    copied(x)
    with pytest.raises(ValueError, match='runs one backbone'):
        runtime_of(model).attach(copied)
    # Pickled (torch.save of a whole model): the runtime comes back, attached.
    loaded = pickle.loads(pickle.dumps(model))
    assert runtime_of(loaded).options() == runtime_of(model).options()
    assert vars(loaded)['forward'].module() is loaded
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x), model.eval()(x), rtol=0, atol=0)


def test_output_sizes_match_the_eager_outputs():
    model = tiny(out_indices=(0, 2, 3)).eval()
    for h, w in [(64, 64), (65, 97), (33, 47)]:
        with torch.no_grad():
            outs = model(torch.randn(1, 3, h, w))
        assert model.output_sizes(h, w) == [tuple(o.shape[-2:]) for o in outs]


def test_cpu_inference_runs_eagerly():
    model = tiny(cuda_graph=dict(inference_graphs=4)).eval()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(1, 3, 40, 50))
    assert runtime_of(model).inference_graphs is None


def test_cpu_training_runs_eagerly():
    model = tiny(cuda_graph=dict(size_divisor=64)).train()
    outs = model(torch.randn(1, 3, 40, 50))
    assert runtime_of(model).training_graphs is None
    assert [tuple(o.shape[-2:]) for o in outs] == model.output_sizes(40, 50)


def test_kernel_warm_up_covers_the_inference_graphs_kernels(monkeypatch):
    """``tools/compile_kernels.py`` runs each test size as inference runs it and, where
    the runtime replays inference graphs, once more as a capture records it (inside
    ``captured_step()``, whose kernels differ)."""
    from mmbiformer.ops.policy import in_captured_step
    from mmbiformer.engine import kernel_warmup
    monkeypatch.setattr(torch.cuda, 'synchronize', lambda: None)
    network = BiFormer.forward
    monkeypatch.setattr(BiFormer, 'forward', lambda self, x: seen.append(in_captured_step())
                        or network(self, x))
    for options, want in ((False, [False]), (dict(inference_graphs=4), [False, True])):
        model, seen = tiny(cuda_graph=options), []
        kernel_warmup.warm_up(model, dict(test=[(64, 64)], train=[], dtype=torch.float16),
                              log=lambda *args: None)
        assert seen == want


def test_capture_ahead_hook_asks_for_the_planned_training_sizes(monkeypatch):
    """``CaptureAheadHook`` hands the backbone's runtime the config's planned training
    sizes (``kernel_warmup.plan``), the loader's batch (mmdet's comes from its batch
    sampler) and the optimizer wrapper's autocast dtype; on a CPU nothing is captured."""
    import types
    from mmengine.config import Config
    from mmbiformer.engine import CaptureAheadHook
    from mmbiformer.engine.kernel_warmup import EVERY_ASPECT, plan
    cfg = Config.fromfile('configs/det/maskrcnn_biformer_s.py')
    model = types.SimpleNamespace(backbone=tiny(
        cuda_graph=dict(size_divisor=128, inference_graphs=64)).train())
    asked = []
    capture = runtime_of(model.backbone).capture_ahead
    monkeypatch.setattr(runtime_of(model.backbone), 'capture_ahead',
                        lambda *args, **kw: asked.append((*args, kw)) or capture(*args, **kw))
    loader = types.SimpleNamespace(batch_size=None,
                                   batch_sampler=types.SimpleNamespace(batch_size=2))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        from mmengine.optim import AmpOptimWrapper
        monkeypatch.setattr('mmengine.optim.optimizer.amp_optimizer_wrapper.'
                            'is_cuda_available', lambda: True)
        wrapper = AmpOptimWrapper(optimizer=torch.optim.SGD(
            model.backbone.parameters(), lr=0.1), dtype='bfloat16')
    test_loop = types.SimpleNamespace(fp16=False, dataloader=types.SimpleNamespace(
        batch_size=1, batch_sampler=None))
    runner = types.SimpleNamespace(cfg=cfg, model=types.SimpleNamespace(module=model),
                                   train_dataloader=loader, optim_wrapper=wrapper,
                                   val_loop=test_loop, test_loop=test_loop)
    hook = CaptureAheadHook()
    hook.before_train(runner)
    hook.before_val(runner)
    hook.before_test(runner)  # the inference graphs of the validation serve it
    (backbone, batch, sizes, dtype, kw), (_, test_batch, test_sizes, test_dtype, test_kw) = asked
    assert backbone is model.backbone and batch == 2 and dtype == torch.bfloat16
    assert sizes == plan(cfg)['train'] and (896, 1024) in sizes and not kw['inference']
    # Every padded size COCO's test resize can make, not the kernel warm-up's sample.
    assert test_kw['inference'] and test_batch == 1 and test_dtype is None
    assert len(test_sizes) == 43 and set(plan(cfg)['test']) < set(test_sizes)
    assert runtime_of(model.backbone).training_graphs is None  # CPU: nothing captured
    assert runtime_of(model.backbone).inference_graphs is None and model.backbone.training
    # A test-only run (tools/test.py, the pipeline benchmark) has no training parts.
    cfg.train_dataloader = cfg.optim_wrapper = None
    assert len(plan(cfg, EVERY_ASPECT)['test']) == 43


# -- CUDA -----------------------------------------------------------------------
def _fwd_bwd(model, x, seed, crop=None):
    """Outputs and gradients of a fixed loss; ``crop``: output sizes to keep, so that a
    padded eager pass sees the loss of the graphed pass (padding contributes nothing)."""
    torch.manual_seed(seed)
    outs = model(x)
    if crop is not None:
        outs = [o[..., :a, :b] for o, (a, b) in zip(outs, crop)]
    loss = sum((o.float() * torch.linspace(-1, 1, o.shape[1], device=o.device)[:, None,
                                                                           None]).mean()
               for o in outs)
    loss.backward()
    return [o.detach().float().clone() for o in outs]


def _grads(model):
    return [p.grad.clone() for p in model.parameters() if p.requires_grad]


@requires_cuda
@pytest.mark.parametrize('dtype, half', [(None, False), (torch.bfloat16, False),
                                         (torch.bfloat16, True)])
def test_replays_match_eager_passes(dtype, half, monkeypatch):
    """``half``: the graphs cast the weights once each way (half_weights.py)."""
    from mmbiformer.ops import policy
    monkeypatch.setattr(policy, '_policy', policy.policy_with(half_weight_copies=half))
    graphed = tiny(cuda_graph=dict(size_divisor=64, max_graphs=4)).cuda().train()
    eager = tiny().cuda().train()
    eager.load_state_dict(graphed.state_dict())
    sizes = [(70, 90), (64, 128), (70, 90), (100, 60), (64, 128)]
    for i, (h, w) in enumerate(sizes):
        x = torch.randn(2, 3, h, w, device='cuda')
        ph, pw = -(-h // 64) * 64, -(-w // 64) * 64
        for m in (graphed, eager):
            m.zero_grad(set_to_none=True)
        with torch.autocast('cuda', dtype=dtype or torch.float16, enabled=dtype is not None), \
                warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            got = _fwd_bwd(graphed, x, i)
        # No autograd node of the capture (side stream) outlives it.
        assert not [w for w in caught if 'AccumulateGrad' in str(w.message)]
        with torch.autocast('cuda', dtype=dtype or torch.float16, enabled=dtype is not None):
            with captured_step():  # the kernels the graph captured
                padded = torch.nn.functional.pad(x, (0, pw - w, 0, ph - h))
                want = _fwd_bwd(eager, padded, i, crop=graphed.output_sizes(h, w))
        tol = dict(rtol=2e-2, atol=2e-2) if dtype else dict(rtol=1e-4, atol=1e-5)
        for a, b in zip(got, want):
            assert a.shape == b.shape
            torch.testing.assert_close(a, b, **tol)
        for a, b in zip(_grads(graphed), _grads(eager)):
            torch.testing.assert_close(a, b, **tol)
    assert len(runtime_of(graphed).training_graphs.graphs) == 3  # one per padded size
    halves = runtime_of(graphed).training_graphs.halves
    assert bool(halves and all(halves.values())) == half


@requires_cuda
def test_warm_ups_allocate_from_the_graphs_pool():
    """A new size's warm-up pass allocates from the graphs' pool, on the stream that
    then captures, so the capture reuses its memory: no block of the default pool
    serves that stream (it held a whole eager pass's memory beside the pool)."""
    graphed = tiny(cuda_graph=True).cuda().train()
    for size in (64, 96):
        x = torch.randn(2, 3, size, size, device='cuda')
        sum(o.float().sum() for o in graphed(x)).backward()
    side = runtime_of(graphed).training_graphs.side.cuda_stream
    assert not [s for s in torch.cuda.memory_snapshot()
                if tuple(s['segment_pool_id']) == (0, 0) and s['stream'] == side]


@requires_cuda
def test_sizes_captured_ahead_are_replayed_as_captured_later():
    """``capture_ahead`` captures the padded sizes before training (fp16 autocast, as
    the detection configs train); training batches of those sizes then replay them,
    with the outputs and gradients of a pass whose capture came with its batch."""
    ahead = tiny(cuda_graph=dict(size_divisor=64)).cuda().train()
    later = tiny(cuda_graph=dict(size_divisor=64)).cuda().train()
    later.load_state_dict(ahead.state_dict())
    assert runtime_of(ahead).capture_ahead(ahead, 2, [(64, 64), (70, 90), (60, 64)],
                                       torch.float16) == 2  # padded: (64, 64) twice
    graphs = runtime_of(ahead).training_graphs.graphs
    keys = set(graphs)
    for i, (h, w) in enumerate([(70, 90), (60, 64)]):
        x = torch.randn(2, 3, h, w, device='cuda')
        got, want = [], []
        for m, out in ((ahead, got), (later, want)):
            m.zero_grad(set_to_none=True)
            with torch.autocast('cuda', dtype=torch.float16):
                out.append(_fwd_bwd(m, x, i))
        assert set(graphs) == keys  # replayed: no capture during training
        for a, b in zip(got[0], want[0]):
            torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-2)
        for a, b in zip(_grads(ahead), _grads(later)):
            torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-2)


@requires_cuda
def test_inference_sizes_captured_ahead_replay_from_the_first_image():
    """With ``inference=True`` the exact sizes are captured in eval mode (the training
    mode restored); a size's first image then replays, with the eager outputs."""
    model = tiny(out_indices=(0, 1, 2, 3), cuda_graph=dict(inference_graphs=4)).cuda().train()
    assert runtime_of(model).capture_ahead(model, 1, [(64, 96), (96, 64)], inference=True) == 2
    assert model.training
    model.eval()
    x = torch.randn(1, 3, 96, 64, device='cuda')
    with torch.no_grad():
        got = model(x)
        with captured_step():
            want = network_forward(model)(x)
    graphs = runtime_of(model).inference_graphs
    assert len(graphs.graphs) == 2 and sum(graphs.seen.values()) == 0  # replayed
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@requires_cuda
def test_gradients_accumulate_and_stats_update_once():
    graphed = tiny(cuda_graph=True).cuda().train()
    eager = tiny().cuda().train()
    eager.load_state_dict(graphed.state_dict())
    x = torch.randn(2, 3, 64, 64, device='cuda')
    for m in (graphed, eager):
        with captured_step():
            for _ in range(2):  # no zero_grad between: gradients add up
                _fwd_bwd(m, x, 0)
    for a, b in zip(_grads(graphed), _grads(eager)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    bn = [(n, b) for n, b in graphed.named_buffers()]
    assert bn, 'the stem has BatchNorm buffers'
    for (name, a), b in zip(bn, eager.buffers()):
        torch.testing.assert_close(a, b, msg=name)  # running stats: 2 updates each


@requires_cuda
def test_sizes_beyond_max_graphs_run_eagerly():
    model = tiny(cuda_graph=dict(max_graphs=1)).cuda().train()
    for h in (64, 96, 64):
        outs = model(torch.randn(1, 3, h, 64, device='cuda'))
        sum(o.sum() for o in outs).backward()
    assert len(runtime_of(model).training_graphs.graphs) == 1
    model.eval()
    with torch.no_grad():
        model(torch.randn(1, 3, 128, 64, device='cuda'))  # inference: eager
    assert len(runtime_of(model).training_graphs.graphs) == 1


@requires_cuda
def test_other_trainable_parameters_recapture():
    """Freezing a stage after graphs were captured: gradients as an eager pass's, and the
    parameters frozen get none (the old graphs wrote the old set's buffers)."""
    graphed = tiny(cuda_graph=True).cuda().train()
    eager = tiny().cuda().train()
    eager.load_state_dict(graphed.state_dict())
    x = torch.randn(2, 3, 64, 64, device='cuda')
    with captured_step():
        _fwd_bwd(graphed, x, 0)
        for m in (graphed, eager):
            m.zero_grad(set_to_none=True)
            for p in m.downsample_layers[0].parameters():
                p.requires_grad_(False)
            _fwd_bwd(m, x, 1)
    assert all(p.grad is None for p in graphed.downsample_layers[0].parameters())
    for a, b in zip(_grads(graphed), _grads(eager)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert len(runtime_of(graphed).training_graphs.graphs) == 1


@requires_cuda
def test_a_second_call_before_the_backward_runs_eagerly():
    """Two calls, one backward: the second must not overwrite the first's activations
    in the shared pool; gradients as two eager calls'."""
    graphed = tiny(cuda_graph=True).cuda().train()
    eager = tiny().cuda().train()
    eager.load_state_dict(graphed.state_dict())
    a, b = (torch.randn(2, 3, 64, 64, device='cuda') for _ in range(2))
    with captured_step():
        for m in (graphed, eager):
            loss = sum(o.float().square().mean() for o in m(a) + m(b))
            loss.backward()
    for g, e in zip(_grads(graphed), _grads(eager)):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5)
    graphs = runtime_of(graphed).training_graphs
    assert graphs.nested_noted and len(graphs.graphs) == 1
    graphed.zero_grad(set_to_none=True)
    out = graphed(a)  # outputs dropped without a backward free the way for replays
    del out
    sum(o.sum() for o in graphed(b)).backward()
    assert runtime_of(graphed).training_graphs.pending is None


@requires_cuda
@pytest.mark.parametrize('mlp_recompute', [None, 'mlp'])
def test_captures_while_a_kept_loss_holds_an_earlier_graph(mlp_recompute):
    """A caller that keeps each step's loss (as a logging hook may) keeps that step's
    autograd graph, and the parameters' gradient accumulators, alive: the next size's
    capture must not reuse them (tools/train.py met "operation would make the legacy
    stream depend on a capturing blocking stream" at its second size)."""
    graphed = tiny(cuda_graph=True, mlp_recompute=mlp_recompute).cuda().train()
    eager = tiny(mlp_recompute=mlp_recompute).cuda().train()
    eager.load_state_dict(graphed.state_dict())
    kept, ids = [], [id(p) for p in graphed.parameters()]
    for i, h in enumerate((64, 96, 128)):
        x = torch.randn(2, 3, h, 64, device='cuda')
        with captured_step():
            for m in (graphed, eager):
                m.zero_grad(set_to_none=True)
                torch.manual_seed(i)
                loss = sum(o.float().square().mean() for o in m(x))
                loss.backward()
                kept.append(loss)
        for a, b in zip(_grads(graphed), _grads(eager)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert len(runtime_of(graphed).training_graphs.graphs) == 3
    assert [id(p) for p in graphed.parameters()] == ids  # the parameters are back


@requires_cuda
def test_replays_with_recomputed_stages():
    """with_cp in a graph: the recomputation in the backward graph reads no RNG state;
    gradients as an eager pass's; DropPath's numbers come from the graph's generator."""
    graphed = tiny(cuda_graph=True, with_cp=[0, 1]).cuda().train()
    eager = tiny().cuda().train()
    eager.load_state_dict(graphed.state_dict())
    x = torch.randn(2, 3, 64, 64, device='cuda')
    with captured_step():
        for m in (graphed, eager):
            _fwd_bwd(m, x, 0)
    for a, b in zip(_grads(graphed), _grads(eager)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    dropping = tiny(cuda_graph=True, with_cp=True, drop_path_rate=0.5).cuda().train()
    for _ in range(2):
        _fwd_bwd(dropping, x, 0)
    assert all(p.grad.isfinite().all() for p in dropping.parameters() if p.requires_grad)


def test_shared_statics_keep_layouts_and_grow_with_the_largest():
    from mmbiformer.engine.shape_graphs import SharedStatics
    statics = SharedStatics()
    nhwc = torch.randn(2, 3, 5, 7).contiguous(memory_format=torch.channels_last)
    half = torch.randn(3, 11).half()
    x, y, z = statics.carve([nhwc, half, torch.randn(8, 4)[:, ::2]])
    assert x.stride() == nhwc.stride() and y.dtype == torch.float16 and z.is_contiguous()
    block = statics.block
    assert all((t.data_ptr() - statics.block.data_ptr()) % statics.ALIGN == 0 for t in (x, y, z))
    assert x.data_ptr() + x.numel() * 4 <= y.data_ptr()  # no overlap within one graph
    small, = statics.carve([torch.randn(4)])
    assert statics.block is block and small.data_ptr() == block.data_ptr()  # shared
    big, = statics.carve([torch.randn(10000)])
    assert statics.block is not block and x.untyped_storage().nbytes() == block.numel()


def test_sizes_beyond_max_graphs_are_logged_once(monkeypatch):
    from mmbiformer.engine import shape_graphs
    logged = []
    monkeypatch.setattr(shape_graphs, 'log_every_rank', lambda msg, **kw: logged.append(msg))
    module = torch.nn.Linear(3, 3)
    graphs = shape_graphs.ShapeGraphs(module, lambda x: (module(x), ), max_graphs=1,
                                      name='Net')
    graphs.graphs[('another size', )] = object()  # the one allowed, taken
    for _ in range(2):
        out, = graphs(torch.randn(2, 3))
    assert out.shape == (2, 3)
    assert logged == ['Net: 1 input sizes captured (max_graphs); further sizes run eagerly']


def test_every_rank_says_what_its_graphs_cost(monkeypatch, capsys):
    """Rank 0 logs through the run's logger; the others, whose mmengine consoles take
    errors only, print the line with their rank."""
    import logging

    import mmengine.dist

    from mmbiformer.engine.rank_log import log_every_rank
    lines = []

    class Logger:
        def log(self, level, message):
            lines.append((level, message))

    monkeypatch.setattr(mmengine.dist, 'get_world_size', lambda: 1)
    log_every_rank('one process', Logger())
    monkeypatch.setattr(mmengine.dist, 'get_world_size', lambda: 2)
    for rank in (0, 1):
        monkeypatch.setattr(mmengine.dist, 'get_rank', lambda: rank)
        log_every_rank('captured', Logger(), level=logging.WARNING)
    assert lines == [(logging.INFO, 'one process'), (logging.WARNING, '[rank 0] captured')]
    assert capsys.readouterr().out == '[rank 1] captured\n'


def test_graph_pools_count_private_segments_only(monkeypatch):
    from mmbiformer.engine import shape_graphs
    snapshot = [dict(segment_pool_id=(0, 0), total_size=100, allocated_size=10),
                dict(segment_pool_id=(1, 3), total_size=40, allocated_size=30),
                dict(segment_pool_id=(1, 4), total_size=8, allocated_size=0)]
    monkeypatch.setattr(torch.cuda, 'memory_snapshot', lambda: snapshot)
    assert shape_graphs.graph_pools() == (48, 18)
    assert shape_graphs.graph_pool_spare() == 18


@requires_cuda
@pytest.mark.parametrize('dtype', [None, torch.float16])
def test_inference_graphs_match_eager_forwards(dtype):
    """One graph per exact size, captured the second time a size comes; its outputs
    are the eager forward's (the same kernels: both inside captured_step) and are
    copies, which later replays leave alone; more sizes than allowed run eagerly."""
    model = tiny(out_indices=(0, 1, 2, 3), cuda_graph=dict(inference_graphs=2)).cuda().eval()
    sizes = [(64, 96), (96, 64), (64, 96), (96, 64), (80, 80), (80, 80), (64, 96)]
    inputs = [torch.randn(2, 3, h, w, device='cuda') for h, w in sizes]
    amp = torch.autocast('cuda', dtype=dtype or torch.float16, enabled=dtype is not None)
    with torch.no_grad(), amp:
        got = [model(x) for x in inputs]
        with captured_step():
            want = [network_forward(model)(x) for x in inputs]
    graphs = runtime_of(model).inference_graphs
    assert len(graphs.graphs) == 2 and graphs.seen[((2, 3, 80, 80), torch.float32,
                                                    inputs[0].device, dtype)] == 2
    tol = dict(rtol=1e-2, atol=1e-2) if dtype else dict(rtol=1e-4, atol=1e-5)
    for g, w in zip(got, want):
        for a, b in zip(g, w):
            torch.testing.assert_close(a, b, **tol)
    assert got[2][0].data_ptr() != got[6][0].data_ptr()  # copies, not the statics


@requires_cuda
def test_inside_an_enclosing_capture_the_backbone_runs_eagerly():
    """A graph that holds the whole forward (a captured step) records the backbone's
    kernels itself: no per-size graph of ours is captured inside it."""
    model = tiny(cuda_graph=dict(inference_graphs=4)).cuda().eval()
    x = torch.randn(2, 3, 64, 96, device='cuda')
    with torch.no_grad():
        model(x)  # the size seen once: the next call would capture it
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), captured_step():
            want = network_forward(model)(x)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), captured_step():
            outs = model(x)
        graph.replay()
    assert not runtime_of(model).inference_graphs.graphs
    for a, b in zip(outs, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
