"""The training step captured once in a CUDA graph and replayed every iteration.

Eager BiFormer training is bound by the host: a step launches about 4,000 small kernels
(30 narrow blocks), and the GPU waits for Python. A CUDA graph records the launches of
one step (forward, loss, backward, gradient clipping, optimizer step) and replays them
with one call (``docs/benchmark_history.md``). This module does that inside mmengine's loop:

* the data preprocessor (normalisation, Mixup/CutMix, which draw their random numbers
  on the host) runs eagerly every iteration; its output is copied into static tensors
  the graph reads;
* the first ``warmup_iters`` iterations are ordinary steps (compiling the Triton
  kernels, creating the optimizer state); the next one is captured and replayed, and
  so is every later one with the same batch layout. A batch of another layout (the
  last, smaller batch of an epoch) runs mmengine's eager ``train_step``;
* learning rates live in device tensors the graph reads, refreshed from the param
  groups before each replay, so mmengine's schedulers work unchanged; a change of any
  other optimizer setting (weight decay, betas) re-captures;
* the optimizer is switched to PyTorch's fused Adam(W) kernel, which takes the
  loss-scaler's ``found_inf`` on the device: a non-finite step is skipped on the GPU,
  before its update, and :class:`NonFiniteLossHook` stops or counts it after the
  iteration, as it does for eager steps.

Randomness stays per step (dropout and DropPath draw from the graph-aware CUDA
generator).

In data-parallel training (several processes, the model wrapped in DDP) the step runs
on the wrapped module, and DDP's own gradient reduction is not used. The step is two
graphs with one collective between them: the first runs forward and backward and
copies the gradients, divided by the number of processes as DDP divides them, into one
flat buffer; ``all_reduce`` sums that buffer over the processes (NCCL on GPUs: it
waits for the first graph on the device and the second waits for it, no host
synchronisation); the second graph clips, unscales and updates. Every process then
holds the same averaged gradients and takes the same step, as under DDP, and so does
every hook after it (EMA, NonFiniteLossHook). Gloo works the same way (it moves the
buffer through the host), which is how one GPU tests it. DDP's buffer broadcast
(``broadcast_buffers``) is mirrored before each step.

Switched on from a config with ``custom_hooks = [dict(type='CapturedTrainStepHook')]``;
where it cannot apply (no CUDA, gradient accumulation, an optimizer other than
Adam/AdamW) the hook says so and training runs eagerly.
"""
import contextlib
import logging
import time
from typing import Dict, List, Optional, Tuple

import torch
import torch.distributed as dist
from mmengine.hooks import Hook
from mmengine.logging import MMLogger
from mmengine.optim import AmpOptimWrapper
from mmengine.registry import HOOKS

from ..ops.policy import captured_step, current_policy
from .half_weights import HalfWeights, half_weights_for, swapped_in
from ..private_api import (accumulative_counts, count_step, foreach_copy_,
                          let_scaler_hand_over_found_inf, reset_scaler_step_state,
                          run_forward, scale_update_param)
from .rank_log import log_every_rank
from .nonfinite_loss_hook import grad_norm
from .stand_ins import stand_ins

NO_CUDA = 'no CUDA device'
# Optimizer settings a captured step bakes in (all but the learning rate, which the
# graph reads from a tensor, and the parameters).
_FROZEN_SETTINGS = ('betas', 'eps', 'weight_decay', 'amsgrad', 'maximize')


def training_autocast_dtype(optim_wrapper) -> Optional[torch.dtype]:
    """The dtype mmengine's ``optim_context`` casts training to (None: fp32)."""
    if not isinstance(optim_wrapper, AmpOptimWrapper):
        return None
    return optim_wrapper.cast_dtype or torch.float16


def unwrap(model):
    """The module a data-parallel wrapper (DDP, mmengine's MMDistributedDataParallel)
    trains, or ``model`` itself."""
    from torch.nn.parallel import DistributedDataParallel
    return model.module if isinstance(model, DistributedDataParallel) else model


def unsupported_reason(model, optim_wrapper) -> Optional[str]:
    """Why a training step of ``model`` (wrapped for data-parallel training or not) with
    ``optim_wrapper`` cannot be captured here (None when it can)."""
    if not torch.cuda.is_available():
        return NO_CUDA
    model = unwrap(model)
    if not hasattr(model, 'data_preprocessor') or not hasattr(model, 'parse_losses'):
        return f'{type(model).__name__} is not an mmengine BaseModel'
    device = next(model.parameters()).device
    if device.type != 'cuda':
        return f'the model is on {device}'
    if accumulative_counts(optim_wrapper) != 1:
        return 'gradient accumulation (optim_wrapper.accumulative_counts) is on'
    optimizer = optim_wrapper.optimizer
    if not isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
        return (f'the optimizer is {type(optimizer).__name__}; the captured step uses '
                f'the fused Adam/AdamW kernel')
    if isinstance(optim_wrapper, AmpOptimWrapper) and not isinstance(
            optim_wrapper.loss_scaler, torch.amp.GradScaler):
        return f'the loss scaler is {type(optim_wrapper.loss_scaler).__name__}'
    return None


def make_capturable(optimizer: torch.optim.Optimizer) -> None:
    """Switch an Adam/AdamW to the fused kernel with its state on the device: no host
    work in ``step()``, and the loss scaler's ``found_inf`` skips a step on the GPU.
    The update is Adam's either way; the fused kernel rounds differently."""
    for group in [optimizer.defaults] + optimizer.param_groups:
        group.update(capturable=True, fused=True, foreach=None)
    let_scaler_hand_over_found_inf(optimizer)
    for group in optimizer.param_groups:  # a resumed state keeps its step on the CPU
        for p in group['params']:
            state = optimizer.state.get(p, {})
            if torch.is_tensor(state.get('step')) and state['step'].device != p.device:
                state['step'] = state['step'].to(p.device, torch.float32)


def _tensor_fields(sample) -> List[str]:
    return sorted(k for k in sample.keys() if torch.is_tensor(sample.get(k)))


def _describe(sample) -> tuple:
    return tuple((k, sample.get(k).shape, sample.get(k).dtype) for k in _tensor_fields(sample))


def batch_layout(data: dict) -> Optional[tuple]:
    """What a captured graph fixes of a preprocessed batch: the inputs' shape, dtype and
    strides, and each data-sample tensor field's; None when the samples differ from
    each other (nothing can be stacked into one static buffer)."""
    inputs, samples = data.get('inputs'), data.get('data_samples')
    if not torch.is_tensor(inputs) or not samples:
        return None
    described = _describe(samples[0])
    if any(_describe(sample) != described for sample in samples[1:]):
        return None
    return (inputs.shape, inputs.dtype, inputs.stride(), len(samples), described)


class StaticBatch:
    """Device buffers holding one preprocessed batch, at fixed addresses: the inputs,
    and each data-sample tensor field stacked (every static sample's field is a row of
    its stack). ``load`` copies a batch of the same layout in, in one kernel per field."""

    def __init__(self, data: dict):
        inputs, samples = data['inputs'], data['data_samples']
        self.inputs = torch.empty_like(inputs)
        self.fields = _tensor_fields(samples[0])
        self.stacks = {k: torch.stack([s.get(k) for s in samples]) for k in self.fields}
        self.samples = []
        for i, sample in enumerate(samples):
            static = sample.clone()
            for k in self.fields:
                static.set_field(self.stacks[k][i], k)
            self.samples.append(static)
        self.load(data)

    def load(self, data: dict) -> None:
        self.inputs.copy_(data['inputs'])
        for k in self.fields:
            torch.stack([s.get(k) for s in data['data_samples']], out=self.stacks[k])

    def as_data(self) -> dict:
        return dict(inputs=self.inputs, data_samples=self.samples)


class FlatGradients:
    """The gradients of data-parallel training in one flat buffer, averaged over the
    processes of ``group`` with one ``all_reduce``.

    ``load`` copies the gradients of the parameters that received one into the buffer,
    divided by the number of processes first (DDP's order: the sum of the divided
    gradients); ``all_reduce`` sums it over the processes; ``bind`` makes each such
    parameter's ``.grad`` a view of it. The parameters that receive a gradient are
    those of the first ``load``: they must be the same at every step, as DDP (without
    ``find_unused_parameters``) requires too.
    """

    def __init__(self, params: List[torch.Tensor], group=None):
        self.params = params
        self.group = group
        self.world = dist.get_world_size(group)
        self.used: Optional[List[bool]] = None
        self.kept: List[torch.Tensor] = []  # the parameters that receive a gradient
        self.flat: Optional[torch.Tensor] = None
        self.views: List[torch.Tensor] = []

    def _layout(self, grads) -> None:
        self.used = [g is not None for g in grads]
        self.kept = kept = [p for p, u in zip(self.params, self.used) if u]
        dtypes = {p.dtype for p in kept}
        if len(dtypes) != 1:
            raise ValueError(f'CapturedTrainStep: data-parallel training needs the trained '
                             f'parameters in one dtype, got {sorted(map(str, dtypes))}')
        self.flat = torch.zeros(sum(p.numel() for p in kept), dtype=kept[0].dtype,
                                device=kept[0].device)
        start = 0
        for p in kept:
            self.views.append(self.flat[start:start + p.numel()].view_as(p))
            start += p.numel()

    def load(self, grads: List[Optional[torch.Tensor]]) -> None:
        if self.used is None:
            self._layout(grads)
        if [g is not None for g in grads] != self.used:
            names = [i for i, (g, u) in enumerate(zip(grads, self.used)) if (g is None) == u]
            raise RuntimeError(
                f'CapturedTrainStep: the parameters that receive a gradient changed between '
                f'steps (parameter indices {names[:5]}); data-parallel steps need the same '
                f'set every step. Remove CapturedTrainStepHook to train through DDP.')
        foreach_copy_(self.views, [g for g in grads if g is not None])
        self.flat.div_(self.world)

    def all_reduce(self) -> None:
        dist.all_reduce(self.flat, group=self.group)

    def bind(self) -> None:
        for p, view in zip(self.kept, self.views):
            p.grad = view


def broadcast_buffers(module: torch.nn.Module, group=None) -> None:
    """Process 0's buffers to every process, as DDP's ``broadcast_buffers`` does before
    each forward."""
    for b in module.buffers():
        dist.broadcast(b, src=dist.get_global_rank(group, 0) if group else 0, group=group)


class CapturedTrainStep:
    """Stands in for ``model.train_step(data, optim_wrapper)`` (see the module's
    docstring). ``capture=False`` runs the same step eagerly every iteration (the CPU
    tests compare it with mmengine's ``train_step``).

    Args:
        model: The mmengine model, or its data-parallel wrapper (the step then runs
            on the wrapped module and reduces the gradients itself).
        optim_wrapper: Its ``OptimWrapper`` or ``AmpOptimWrapper``.
        warmup_iters (int): Eager iterations before the capture (at least 1: the
            optimizer state and the kernels must exist before).
        capture (bool): Capture and replay; False: eager steps only.
    """

    def __init__(self, model, optim_wrapper, warmup_iters: int = 3, capture: bool = True):
        self.wrapped = model  # what mmengine's eager step runs (DDP, if wrapped)
        self.model = unwrap(model)
        self.ddp = model if self.wrapped is not self.model else None
        self.wrapper = optim_wrapper
        self.warmup_iters = max(1, warmup_iters)
        self.capture = capture
        self.scaler = (optim_wrapper.loss_scaler
                       if isinstance(optim_wrapper, AmpOptimWrapper) else None)
        make_capturable(optim_wrapper.optimizer)
        self.graph = None
        self.update_graph = None  # data-parallel: the second graph (clip, update)
        self.flat_grads = None
        if self.ddp is not None:
            self.flat_grads = FlatGradients([p for p in self._params() if p.requires_grad],
                                            getattr(self.ddp, 'process_group', None))
        # One cast of the weights autocast casts, each way (half_weights.py): set at
        # the first warm-up; one process only (data-parallel steps use stand-ins).
        self.half: Optional[HalfWeights] = None
        self.half_checked = False
        self.capture_s = 0.0  # seconds spent capturing
        self.frozen = None
        self.layout = None
        self.warm = 0  # eager steps run with the current layout
        self.counts = dict(warmup=0, replayed=0, eager=0, captures=0)
        self.guard: Optional[List[Tuple[str, torch.Tensor]]] = None
        self.failure: Optional[str] = None  # why the capture failed, if it did
        self._last_lrs: List[float] = []
        # One stream for the warm-ups and the capture: a freed block serves only the
        # stream it was used on, so a new stream per warm-up held a step's memory each.
        self.side: Optional[torch.cuda.Stream] = None

    # ---------------------------------------------------------------- the step itself
    def _autocast(self):
        dtype = training_autocast_dtype(self.wrapper)
        if dtype is None:
            return contextlib.nullcontext()
        # No weight-cast cache: a replayed graph must redo the casts of updated weights.
        return torch.autocast('cuda', dtype=dtype, cache_enabled=False)

    def _params(self) -> List[torch.Tensor]:
        return [p for g in self.wrapper.optimizer.param_groups for p in g['params']]

    def _step(self, data: dict) -> dict:
        """Forward, loss, backward, the gradients' all-reduce (data-parallel), clipping
        and update, with no host synchronisation; the update is skipped on the device
        when the step is not finite."""
        log_vars = self._forward_backward(data)
        self._reduce()
        self._update()
        return log_vars

    def _forward_backward(self, data: dict) -> dict:
        """Forward, loss and backward; the gradients go to ``.grad`` (one process) or,
        data-parallel, to the flat buffer. There the parameters' stand-ins take them:
        DDP keeps the parameters' gradient accumulators, made on the default stream,
        which a capture (and the warm-up's side stream) must not meet."""
        if self.flat_grads is None:
            with swapped_in(self.half, self.model):
                loss, log_vars = self._loss(data)
                loss.backward()
            return log_vars
        with stand_ins(self.model, self.flat_grads.params) as leaves:
            loss, log_vars = self._loss(data)
            grads = torch.autograd.grad(loss, leaves, allow_unused=True)
        self.flat_grads.load(list(grads))
        return log_vars

    def _loss(self, data: dict):
        """The (scaled) loss to differentiate, and the log variables."""
        with self._autocast():
            losses = run_forward(self.model, data)
        loss, log_vars = self.model.parse_losses(losses)
        self._finite_loss = torch.isfinite(loss.detach())
        return (self.scaler.scale(loss) if self.scaler else loss), log_vars

    def _reduce(self) -> None:
        if self.flat_grads is not None:
            self.flat_grads.all_reduce()
            self.flat_grads.bind()

    def _update(self) -> None:
        """Clipping, unscaling and the optimizer step on the (averaged) gradients."""
        optimizer = self.wrapper.optimizer
        finite_loss = self._finite_loss
        clip = getattr(self.wrapper, 'clip_grad_kwargs', None)
        norm = None
        if clip:
            if self.scaler:
                self.scaler.unscale_(optimizer)
            norm = torch.nn.utils.clip_grad_norm_(self._params(), **clip)
        if self.scaler:
            # The scaler skips steps whose gradients are not finite (its own job).
            self.scaler.step(optimizer)
            self.scaler.update(scale_update_param(self.wrapper))
            self.guard = [('loss', finite_loss)]
        else:
            if norm is None:
                norm = grad_norm(self.wrapper)
            finite_grads = torch.isfinite(norm)
            optimizer.grad_scale = None
            optimizer.found_inf = (~(finite_loss & finite_grads)).float()
            try:
                optimizer.step()
            finally:
                del optimizer.grad_scale, optimizer.found_inf
            self.guard = [('loss', finite_loss), ('gradients', finite_grads)]
        self._norm = norm

    # ------------------------------------------------------------------- bookkeeping
    def _finish(self, log_vars: dict) -> dict:
        count_step(self.wrapper)  # ``wrapper.update_params`` is bypassed
        if getattr(self.wrapper, 'clip_grad_kwargs', None) and self._norm is not None:
            self.wrapper.message_hub.update_scalar('train/grad_norm', float(self._norm))
        # Copies: the graph overwrites its outputs at the next replay.
        return {k: v.detach().clone() if torch.is_tensor(v) else v
                for k, v in log_vars.items()}

    def _eager(self, data: dict) -> dict:
        self.wrapper.optimizer.zero_grad(set_to_none=True)
        log_vars = self._step(data)
        self.wrapper.optimizer.zero_grad(set_to_none=True)
        return self._finish(log_vars)

    def _settings(self) -> list:
        return [tuple(repr(g.get(k)) for k in _FROZEN_SETTINGS)
                for g in self.wrapper.optimizer.param_groups]

    def _capture(self, data: dict) -> None:
        """Record one step on ``data``'s static copy (nothing runs yet)."""
        optimizer = self.wrapper.optimizer
        self.graph = None  # free an earlier capture's memory first
        torch.cuda.synchronize()
        self.static = StaticBatch(data)
        lrs = [g['lr'] for g in optimizer.param_groups]
        self.lr_tensors = [torch.tensor(float(lr), device=self.static.inputs.device)
                           for lr in lrs]
        self._last_lrs = [float(lr) for lr in lrs]
        optimizer.zero_grad(set_to_none=True)  # the graph allocates its own gradients
        graph = torch.cuda.CUDAGraph()
        update = torch.cuda.CUDAGraph() if self.flat_grads is not None else None
        for group, lr in zip(optimizer.param_groups, self.lr_tensors):
            group['lr'] = lr
        # thread_local: the loader's pin-memory thread may call CUDA meanwhile.
        mode = dict(capture_error_mode='thread_local', stream=self._side_stream())
        try:
            with captured_step():
                if update is None:
                    with torch.cuda.graph(graph, **mode):
                        self.static_log_vars = self._step(self.static.as_data())
                else:  # two graphs; the all-reduce between them runs at each replay
                    with torch.cuda.graph(graph, **mode):
                        self.static_log_vars = self._forward_backward(self.static.as_data())
                    self.flat_grads.bind()
                    with torch.cuda.graph(update, pool=graph.pool(), **mode):
                        self._update()
        finally:
            for group, lr in zip(optimizer.param_groups, lrs):
                group['lr'] = lr  # schedulers and loggers keep seeing numbers
        self.static_guard, self.static_norm = self.guard, self._norm
        self.grads = [(p, p.grad) for p in self._params() if p.grad is not None]
        self.frozen = self._settings()
        self.graph, self.update_graph = graph, update
        self.counts['captures'] += 1

    def _replay(self) -> dict:
        optimizer = self.wrapper.optimizer
        for group, lr_tensor, last in zip(optimizer.param_groups, self.lr_tensors,
                                          self._last_lrs):
            if float(group['lr']) != last:
                lr_tensor.fill_(float(group['lr']))
        self._last_lrs = [float(g['lr']) for g in optimizer.param_groups]
        self.graph.replay()
        if self.update_graph is not None:
            self.flat_grads.all_reduce()
            self.update_graph.replay()
        for p, grad in self.grads:  # hooks that read p.grad see this step's gradients
            p.grad = grad
        self.guard, self._norm = self.static_guard, self.static_norm
        self.counts['replayed'] += 1
        return self._finish(self.static_log_vars)

    def __call__(self, data, optim_wrapper=None) -> Dict[str, torch.Tensor]:
        data = self.model.data_preprocessor(data, True)
        if self.ddp is not None and getattr(self.ddp, 'broadcast_buffers', False):
            broadcast_buffers(self.model, self.flat_grads.group)
        layout = batch_layout(data) if isinstance(data, dict) else None
        if layout is None or (self.graph is not None and layout != self.layout):
            # Another batch layout than the captured one: mmengine's eager step.
            self.guard = None
            self.counts['eager'] += 1
            self.wrapper.optimizer.zero_grad(set_to_none=True)  # drop the graph's
            return self._eager_preprocessed(data)
        if layout != self.layout:
            self.layout, self.warm = layout, 0
        if not self.capture:
            self.counts['eager'] += 1
            return self._eager(data)
        if self.warm < self.warmup_iters:
            self.warm += 1
            self.counts['warmup'] += 1
            return self._warmup(data)
        if self.graph is None or self._settings() != self.frozen:
            # (A changed optimizer setting, e.g. a weight-decay schedule: re-record.)
            if not self._try_capture(data):
                self.counts['eager'] += 1
                return self._eager(data)
        else:
            self.static.load(data)
        return self._replay()

    def _try_capture(self, data: dict) -> bool:
        """Capture; on failure (a host synchronisation in some module: ``.item()``,
        ``nonzero``) say why and train eagerly from now on. Data-parallel processes
        agree: if one cannot capture, none replays (their collectives must match)."""
        device = next(self.model.parameters()).device
        generator = torch.cuda.default_generators[device.index if device.index is not None
                                                  else torch.cuda.current_device()]
        rng = generator.clone_state()
        start = time.perf_counter()
        try:
            self._capture(data)
            failure = None
        except Exception as e:  # CUDA and PyTorch raise plain RuntimeErrors here
            # An aborted capture leaves the CUDA generator in capture mode (PyTorch
            # skips its epilogue): every later random draw (DropPath) would raise.
            generator.graphsafe_set_state(rng)
            while e.__context__ is not None:  # the first error, not the aborted capture's
                e = e.__context__
            failure = f'{type(e).__name__}: {str(e).splitlines()[0]}'
        if self.flat_grads is not None:
            captured = torch.tensor([failure is None], dtype=torch.int32, device=device)
            dist.all_reduce(captured, op=dist.ReduceOp.MIN,
                            group=self.flat_grads.group)
            if failure is None and not captured.item():
                failure = 'another process could not capture its step'
        self.capture_s += time.perf_counter() - start
        if failure is None:
            return True
        self.failure = failure
        self.graph = self.update_graph = None
        self.capture = False
        self.wrapper.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:  # its per-step state may be half-way
            reset_scaler_step_state(self.scaler)
        torch.cuda.synchronize()
        MMLogger.get_current_instance().warning(
            f'CapturedTrainStepHook: the training step could not be captured in a '
            f'CUDA graph ({self.failure}); training '
            f'eagerly. Remove the hook from custom_hooks to silence this.')
        return False

    def _side_stream(self) -> torch.cuda.Stream:
        if self.side is None:
            self.side = torch.cuda.Stream()
        return self.side

    def _warmup(self, data: dict) -> dict:
        # On a side stream, as PyTorch asks of the runs before a capture.
        side = self._side_stream()
        side.wait_stream(torch.cuda.current_stream())
        with captured_step(), torch.cuda.stream(side):
            if not self.half_checked:
                self.half_checked = True
                self.half = self._half_weights(data)
            out = self._eager(data)
        torch.cuda.current_stream().wait_stream(side)
        return out

    def _half_weights(self, data: dict) -> Optional[HalfWeights]:
        if self.flat_grads is not None or not current_policy().half_weight_copies:
            return None

        def forward():
            with self._autocast():
                run_forward(self.model, data)

        return half_weights_for(self.model, forward, training_autocast_dtype(self.wrapper))

    def _eager_preprocessed(self, data) -> dict:
        """mmengine's ``train_step`` (DDP's, data-parallel) after its data preprocessor
        (which has run already)."""
        with self.wrapper.optim_context(self.wrapped):
            losses = run_forward(self.wrapped, data)  # through DDP, if any
        loss, log_vars = self.model.parse_losses(losses)
        self.wrapper.update_params(loss)
        return log_vars


@HOOKS.register_module()
class CapturedTrainStepHook(Hook):
    """Train with the step captured in a CUDA graph (:class:`CapturedTrainStep`), where
    it applies; elsewhere say why and train eagerly.

    Args:
        warmup_iters (int): Eager iterations before the capture.
    """

    priority = 'LOW'

    def __init__(self, warmup_iters: int = 3):
        self.warmup_iters = warmup_iters
        self.step = None

    def before_train(self, runner) -> None:
        reason = unsupported_reason(runner.model, runner.optim_wrapper)
        if reason:  # no GPU is expected on a CPU machine; anything else is news
            runner.logger.log(logging.INFO if reason == NO_CUDA else logging.WARNING,
                              f'CapturedTrainStepHook: training eagerly: {reason}.')
            return
        self.step = CapturedTrainStep(runner.model, runner.optim_wrapper,
                                      self.warmup_iters)
        runner.model.train_step = self.step
        flat = self.step.flat_grads
        how = ''
        if flat is not None:
            mib = sum(p.numel() * p.element_size() for p in flat.params) / 2**20
            how = (f' as two graphs, with one all_reduce of the gradients ({mib:.0f} MiB) '
                   f'over {flat.world} processes between them')
        log_every_rank(
            f'CapturedTrainStepHook: the training step is captured in a CUDA graph'
            f'{how} after {self.step.warmup_iters} eager iterations; batches of another '
            f'size run eagerly.', runner.logger)

    def after_train(self, runner) -> None:
        if self.step is not None:
            c = self.step.counts
            log_every_rank(
                f'CapturedTrainStepHook: {c["replayed"]} steps replayed, '
                f'{c["warmup"]} warm-up and {c["eager"]} eager (other batch sizes, or no '
                f'capture), {c["captures"]} capture(s) in {self.step.capture_s:.2f} s.',
                runner.logger)
            del runner.model.train_step  # the model's own method again
