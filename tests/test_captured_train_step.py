"""The CUDA-graph training step (mmbiformer/engine/captured_train_step.py).

CPU: its step (``capture=False``) against mmengine's own ``train_step``, with Mixup /
CutMix, label smoothing and a learning-rate change; the GPU skip of a non-finite step as
NonFiniteLossHook sees it; the hook declining without CUDA. CUDA: the replayed graph
against the eager steps, for fp32, bf16 and fp16 with clipping, and the eager fallback
for a smaller batch, and a step that cannot be captured. The multi-tensor EMA against
mmengine's."""
import copy
import os
import re

import pytest
import torch
from mmengine.logging import MessageHub, MMLogger
from mmengine.optim import AmpOptimWrapper, OptimWrapper

from mmbiformer.engine import (CapturedTrainStep, CapturedTrainStepHook, NonFiniteLossError,
                               NonFiniteLossHook)
from mmbiformer.engine.host_copies import LaggedValues
from mmbiformer.engine.captured_train_step import StaticBatch, batch_layout
from mmbiformer.ops.policy import captured_step
from mmbiformer.utils.distributed import free_port
from helpers import ROOT, TINY_ARCH



def classifier(device='cpu', drop_path=0.0):
    from mmpretrain.registry import MODELS
    from mmpretrain.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    torch.manual_seed(0)
    return MODELS.build(dict(
        _scope_='mmpretrain',  # whatever default scope an earlier test left
        type='ImageClassifier',
        data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=10, mean=[128] * 3,
                               std=[64] * 3, to_rgb=True),
        backbone=dict(type='BiFormer', arch=TINY_ARCH, n_win=2, out_indices=(3, ),
                      out_norm='batchnorm', drop_path_rate=drop_path),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=10, in_channels=128,
                  loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')),
        train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8),
                                 dict(type='CutMix', alpha=1.0)]))).to(device)


def batch(seed, n=4, size=32):
    from mmpretrain.structures import DataSample
    g = torch.Generator().manual_seed(seed)
    return dict(inputs=[torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8)
                        for _ in range(n)],
                data_samples=[DataSample().set_gt_label(int(i))
                              for i in torch.randint(0, 10, (n, ), generator=g)])


def wrapper_for(model, amp=None, clip=None):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    kwargs = dict(clip_grad=clip) if clip else {}
    if amp:
        return AmpOptimWrapper(optimizer=opt, dtype=amp, **kwargs)
    return OptimWrapper(opt, **kwargs)


def train(model, wrapper, step, batches, lr_at=None):
    """Run ``step`` over ``batches`` (seeded per batch: Mixup/CutMix draw the same);
    the learning rate changes at iteration ``lr_at`` as a scheduler would change it."""
    import numpy as np
    losses = []
    for i, data in enumerate(batches):
        if i == lr_at:
            for g in wrapper.optimizer.param_groups:
                g['lr'] = g['lr'] * 0.5
        torch.manual_seed(100 + i)
        np.random.seed(100 + i)
        losses.append(float(step(copy.deepcopy(data), optim_wrapper=wrapper)['loss']))
    return losses


def test_eager_step_matches_mmengine_train_step():
    batches = [batch(i) for i in range(4)]
    ref = classifier()
    ref_wrapper = wrapper_for(ref)
    ref_wrapper.optimizer.param_groups[0]['fused'] = True  # the same kernel as ours
    ref_losses = train(ref, ref_wrapper, ref.train_step, batches, lr_at=2)

    ours = classifier()
    wrapper = wrapper_for(ours)
    step = CapturedTrainStep(ours, wrapper, capture=False)
    losses = train(ours, wrapper, step, batches, lr_at=2)
    assert losses == pytest.approx(ref_losses, rel=1e-5)
    for (name, a), b in zip(ref.state_dict().items(), ours.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)
    assert step.counts == dict(warmup=0, replayed=0, eager=4, captures=0)
    assert wrapper._inner_count == 4


def test_static_batch_loads_new_values_at_the_same_addresses():
    model = classifier()
    data = model.data_preprocessor(batch(0), True)  # Mixup/CutMix: soft gt_score rows
    static = StaticBatch(data)
    addresses = [static.inputs.data_ptr()] + [s.gt_score.data_ptr() for s in static.samples]
    other = model.data_preprocessor(batch(1), True)
    assert batch_layout(other) == batch_layout(data)
    static.load(other)
    assert [static.inputs.data_ptr()] + [
        s.gt_score.data_ptr() for s in static.samples] == addresses
    torch.testing.assert_close(static.inputs, other['inputs'], rtol=0, atol=0)
    for s, o in zip(static.samples, other['data_samples']):
        torch.testing.assert_close(s.gt_score, o.gt_score, rtol=0, atol=0)
    smaller = model.data_preprocessor(batch(2, n=3), True)
    assert batch_layout(smaller) != batch_layout(data)


def _runner(model, wrapper, tmp_path):
    runner = type('Runner', (), {})()
    runner.model, runner.optim_wrapper = model, wrapper
    runner.message_hub = MessageHub.get_instance('test_captured')
    runner.logger = MMLogger.get_instance('test_captured')
    runner.iter, runner.epoch, runner.work_dir = 3, 0, str(tmp_path)
    return runner


@pytest.mark.parametrize('late', [False, True])
def test_non_finite_step_is_skipped_before_its_update_then_reported(tmp_path, late):
    """``late``: the flags read one iteration late, as from a GPU (the step is
    reported at the next iteration's end, or at the end of the epoch, by its own
    iteration)."""
    model = classifier()
    wrapper = wrapper_for(model)
    step = CapturedTrainStep(model, wrapper, capture=False)
    runner = _runner(model, wrapper, tmp_path)
    model.train_step = step
    hook = NonFiniteLossHook()
    hook.late = LaggedValues(lag=late)
    hook.before_train(runner)
    step(batch(0))  # a finite step: state exists, the hook passes it
    hook.after_train_iter(runner, 0)
    before = copy.deepcopy(model.state_dict())
    model.head.fc.weight.grad = None
    with torch.no_grad():
        model.head.fc.bias[0] = float('nan')  # the logits, hence the loss, turn NaN
    nan_bias = model.head.fc.bias.clone()
    step(batch(1))
    after = model.state_dict()
    for (name, a), b in zip(before.items(), after.values()):
        if name != 'head.fc.bias' and 'running' not in name and 'num_batches' not in name:
            assert torch.equal(a, b), name  # no update reached the weights
    torch.testing.assert_close(model.head.fc.bias, nan_bias, rtol=0, atol=0, equal_nan=True)
    if late:
        hook.after_train_iter(runner, 1)  # read at the next iteration's end
        runner.iter += 1
        with pytest.raises(NonFiniteLossError,
                           match=r'non-finite loss at iteration 4 .*non-finite: loss=nan'):
            hook.after_train_epoch(runner)
        return
    with pytest.raises(NonFiniteLossError, match='non-finite loss at iteration 4'):
        hook.after_train_iter(runner, 1)


def test_hook_declines_without_cuda_and_leaves_the_step(tmp_path):
    if torch.cuda.is_available():
        pytest.skip('this machine has CUDA')
    model = classifier()
    runner = _runner(model, wrapper_for(model), tmp_path)
    own = model.train_step
    CapturedTrainStepHook().before_train(runner)
    assert model.train_step == own


@pytest.mark.skipif(not torch.cuda.is_available(), reason='CUDA graphs need a GPU')
@pytest.mark.parametrize('amp,clip,half', [(None, None, False),
                                           ('bfloat16', dict(max_norm=1.0), False),
                                           ('float16', None, False), ('bfloat16', None, True)])
def test_replayed_graph_matches_eager_steps(amp, clip, half):
    """``half``: the captured step casts the weights once each way (half_weights.py)."""
    from mmbiformer.ops.policy import runtime_policy
    batches = [batch(i, n=8, size=64) for i in range(7)] + [batch(9, n=5, size=64)]
    results = []
    for capture in (False, True):
        model = classifier('cuda', drop_path=0.1)
        wrapper = wrapper_for(model, amp, clip)
        step = CapturedTrainStep(model, wrapper, warmup_iters=2, capture=capture)
        # The eager reference with the kernels the captured step chooses (Triton norms
        # and attention where they apply): the comparison is of the replay, not of
        # two kernels' rounding, which Adam's normalised updates would magnify.
        with captured_step(), runtime_policy(half_weight_copies=half):
            losses = train(model, wrapper, step, batches, lr_at=5)
        assert (step.half is not None) == (half and capture)
        results.append((losses, copy.deepcopy(model.state_dict()), step.counts))
    (ref_losses, ref_state, _), (losses, state, counts) = results
    # Iterations 0-1 warm-up, 2 captured and replayed, 3-6 replayed, 7 (5 images) eager.
    assert counts == dict(warmup=2, replayed=5, eager=1, captures=1)
    tol = dict(rtol=2e-2, atol=2e-3) if amp else dict(rtol=1e-4, atol=1e-5)
    assert losses == pytest.approx(ref_losses, **{'rel': tol['rtol']})
    for name, a in ref_state.items():
        torch.testing.assert_close(state[name], a, **tol,
                                   msg=lambda m, name=name: f'{name}: {m}')


def test_half_weights_give_autocasts_gradients_bit_for_bit():
    """The weights autocast casts once, cast together into half-precision stand-ins
    (one copy each way): the same loss and gradients as autocast's own casts; the
    LayerNorms (read in float32) and the position embedding's weight (a hook of its
    own) keep their parameters."""
    from mmbiformer.engine.half_weights import HalfWeights, autocast_cast_once
    from mmbiformer.models import BiFormer
    torch.manual_seed(0)
    model = BiFormer(TINY_ARCH, n_win=2, out_indices=(3, ))
    x = torch.randn(2, 3, 64, 64)

    def loss():
        with torch.autocast('cpu', dtype=torch.bfloat16):
            return model(x)[0].float().square().mean()

    params = autocast_cast_once(model, loss, torch.bfloat16)
    names = {id(p): n for n, p in model.named_parameters()}
    chosen = sorted(names[id(p)] for p in params)
    assert chosen and all(n.endswith(('.weight', '.bias')) for n in chosen)
    assert {'stages.0.0.attn.qkv.qkv.weight', 'stages.0.0.mlp.3.bias'} <= set(chosen)
    assert not any('norm' in n or n.endswith('pos_embed.weight') for n in chosen), chosen
    ref = loss()
    ref.backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    half = HalfWeights(params, torch.bfloat16)
    with half.swapped(model):
        got = loss()
        got.backward()
    assert all(p.dtype == torch.float32 for p in model.parameters())  # restored
    assert torch.equal(got, ref)
    for n, p in model.named_parameters():
        assert p.grad.dtype == torch.float32 and torch.equal(p.grad, ref_grads[n]), n


def test_foreach_ema_equals_mmengine_ema_bit_for_bit():
    from mmengine.model import ExponentialMovingAverage

    from mmbiformer.engine import ForeachExponentialMovingAverage
    model = classifier()
    ours, ref = (cls(model, momentum=0.1, interval=2)
                 for cls in (ForeachExponentialMovingAverage, ExponentialMovingAverage))
    for i in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
            for b in model.buffers():
                b.add_(1)
        ours.update_parameters(model)
        ref.update_parameters(model)
    for (name, a), b in zip(ref.module.state_dict().items(),
                            ours.module.state_dict().values()):
        assert torch.equal(a, b), name
    assert ours.steps == ref.steps == 5


@pytest.mark.skipif(not torch.cuda.is_available(), reason='CUDA graphs need a GPU')
def test_a_step_that_cannot_be_captured_trains_eagerly_and_says_why():
    import math
    model = classifier('cuda', drop_path=0.1)  # random draws after the failed capture
    forward = model.head.fc.forward
    model.head.fc.forward = lambda x: forward(x) + 0 * float(x.sum())  # a host sync
    wrapper = wrapper_for(model)
    step = CapturedTrainStep(model, wrapper, warmup_iters=1)
    losses = train(model, wrapper, step, [batch(i, n=8, size=64) for i in range(3)])
    assert step.counts == dict(warmup=1, replayed=0, eager=2, captures=0)
    assert all(math.isfinite(v) for v in losses)
    assert 'capturing' in step.failure  # CUDA's own words for the sync, not the abort
    torch.randn(2, device='cuda').bernoulli_(0.5)  # the generator works eagerly again


def test_cpu_machine_loads_without_pinned_memory():
    """The cls configs pin their batches for the GPU copy; without a GPU PyTorch would
    warn at every loader start, so tools switch it off there."""
    if torch.cuda.is_available():
        pytest.skip('this machine has CUDA')
    from mmbiformer.utils.launch import fit_to_device, load_config
    cfg = load_config(os.path.join(ROOT, 'configs/cls/biformer_s_in1k.py'))
    assert cfg.train_dataloader.pin_memory
    fit_to_device(cfg)
    assert not cfg.train_dataloader.pin_memory


@pytest.mark.parametrize('captured', [False, True])
def test_schedulers_see_the_steps_without_warnings(captured, tmp_path):
    """mmengine's schedulers count ``optim_wrapper.step`` calls and warn when it was
    replaced or not called: neither our guard nor our step may trigger that."""
    import warnings

    from mmengine.optim.scheduler import LinearLR
    model = classifier()
    wrapper = wrapper_for(model)
    scheduler = LinearLR(wrapper, start_factor=0.5, by_epoch=False, end=4)
    runner = _runner(model, wrapper, tmp_path)
    NonFiniteLossHook().before_train(runner)  # wraps wrapper.step (fp32)
    step = CapturedTrainStep(model, wrapper, capture=False) if captured else model.train_step
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        for i in range(2):
            step(batch(i), optim_wrapper=wrapper)
            scheduler.step()
    assert not [w for w in caught if 'scheduler' in str(w.message)], caught


def _data_parallel_worker(rank, world, port, device, capture, amp, out):
    """One process of a 2-process gloo run: mmengine's eager DDP step, then ours on the
    DDP-wrapped model, from the same weights, each process on its own batches."""
    import torch.distributed as dist
    from mmengine.model import MMDistributedDataParallel
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    if device == 'cpu':  # one thread: CPU reductions in one order, whatever the machine
        torch.set_num_threads(1)
    dist.init_process_group('gloo', rank=rank, world_size=world)
    try:
        batches = [batch(10 * i + rank, n=8, size=64) for i in range(6)]
        batches.append(batch(90 + rank, n=5, size=64))  # another layout: DDP's own step
        results = {}
        for ours in (False, True):
            model = classifier(device, drop_path=0.1)
            ids = [0] if device == 'cuda' else None
            ddp = MMDistributedDataParallel(module=model, device_ids=ids,
                                            broadcast_buffers=True)
            wrapper = wrapper_for(model, amp, dict(max_norm=1.0))
            if ours:
                step = CapturedTrainStep(ddp, wrapper, warmup_iters=2, capture=capture)
            else:
                step = ddp.train_step
                for group in wrapper.optimizer.param_groups:  # the same kernel as ours
                    group['fused'] = True
            with captured_step():  # the kernels the captured step chooses, both runs
                losses = train(model, wrapper, step, batches, lr_at=4)
            results[ours] = dict(losses=losses, state={
                k: v.cpu() for k, v in model.state_dict().items()},
                counts=step.counts if ours else None)
        torch.save(results, os.path.join(out, f'rank{rank}.pt'))
    finally:
        dist.destroy_process_group()


def _run_data_parallel(tmp_path, device, capture, amp):
    import torch.multiprocessing as mp
    mp.spawn(_data_parallel_worker, args=(2, free_port(), device, capture, amp,
                                          str(tmp_path)), nprocs=2)
    return [torch.load(tmp_path / f'rank{r}.pt') for r in range(2)]


# Biases of convs that a BatchNorm follows: their gradient is zero up to rounding, and
# Adam turns rounding (which the reduction order sets) into steps of the learning rate.
_ROUNDING_ONLY = re.compile(r'downsample_layers\.\d\.[03]\.bias')


def _assert_data_parallel_equal(ranks, tol):
    for rank in ranks:
        ref, ours = rank[False], rank[True]
        assert ours['losses'] == pytest.approx(ref['losses'], rel=tol['rtol'])
        for name, a in ref['state'].items():
            if _ROUNDING_ONLY.search(name):
                continue
            torch.testing.assert_close(ours['state'][name], a, **tol,
                                       msg=lambda m, name=name: f'{name}: {m}')
    # Averaged gradients and broadcast buffers: every process holds the same model.
    for name, a in ranks[0][True]['state'].items():
        b = ranks[1][True]['state'][name]
        if 'running' not in name and 'num_batches' not in name:  # updated locally
            assert torch.equal(a, b), name


def test_data_parallel_step_matches_ddp(tmp_path):
    """Two gloo processes: our step on the DDP-wrapped model (its own all-reduce) against
    mmengine's DDP step: the same losses and weights on each process."""
    ranks = _run_data_parallel(tmp_path, 'cpu', False, None)
    _assert_data_parallel_equal(ranks, dict(rtol=1e-5, atol=1e-6))
    assert ranks[0][True]['counts'] == dict(warmup=0, replayed=0, eager=7, captures=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='CUDA graphs need a GPU')
@pytest.mark.parametrize('amp', [None, 'float16'])
def test_data_parallel_replay_matches_ddp(tmp_path, amp):
    """Two gloo processes sharing one GPU: the two graphs and the all-reduce between
    them against mmengine's eager DDP step."""
    ranks = _run_data_parallel(tmp_path, 'cuda', True, amp)
    tol = dict(rtol=2e-2, atol=2e-3) if amp else dict(rtol=1e-4, atol=1e-5)
    _assert_data_parallel_equal(ranks, tol)
    for rank in ranks:  # 0-1 warm-up, 2 captured and replayed, 3-5 replayed, 6 eager
        assert rank[True]['counts'] == dict(warmup=2, replayed=4, eager=1, captures=1)


def test_logged_memory_is_what_the_process_holds(monkeypatch):
    """The log's 'memory' is the allocator's reserved peak (CUDA graphs' pools
    included), reset at each log as mmengine's is, and the log says so once; train.py and
    test.py use it unless the config names its own log processor."""
    from types import SimpleNamespace

    from mmengine.config import Config

    from mmbiformer.engine import FootprintLogProcessor
    from mmbiformer.utils.launch import log_memory_footprint
    monkeypatch.setattr(torch.cuda, 'max_memory_reserved', lambda device=None: 3 * 2**30)
    resets = []
    monkeypatch.setattr(torch.cuda, 'reset_peak_memory_stats', resets.append)
    said = []
    runner = SimpleNamespace(model=SimpleNamespace(output_device=None),
                             logger=SimpleNamespace(info=said.append))
    monkeypatch.setattr(FootprintLogProcessor, '_said', False)
    assert FootprintLogProcessor()._get_max_memory(runner) == 3072 and resets == [None]
    FootprintLogProcessor()._get_max_memory(runner)
    assert len(said) == 1 and 'reserved by PyTorch' in said[0]  # once, before the first
    cfg = Config(dict(log_processor=dict(type='LogProcessor', window_size=50)))
    log_memory_footprint(cfg)
    assert cfg.log_processor == dict(type='FootprintLogProcessor', window_size=50)
    own = Config(dict(log_processor=dict(type='MyLogProcessor')))
    log_memory_footprint(own)
    assert own.log_processor.type == 'MyLogProcessor'
