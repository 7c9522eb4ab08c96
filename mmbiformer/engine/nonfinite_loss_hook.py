"""Stop a diverging run at its first non-finite loss or gradient norm, before it
corrupts the weights.

Without it a run whose loss turns NaN trains on (every update is NaN), saves NaN
checkpoints over the last good ones' successors and exits 0. The hook guards the
optimizer wrapper's ``update_params``: a loss that is NaN or inf is caught before its
backward pass and optimizer step, so the weights in memory and every checkpoint
written so far stay finite. Without mixed precision the gradient norm is checked before
the optimizer step too (a finite loss can have NaN gradients; under mixed precision the
loss scaler already skips such steps). Then, by default, it raises
:class:`NonFiniteLossError` naming the iteration, the non-finite loss terms, the newest
checkpoint (the last finite state) and the likely causes; ``tools/train.py`` prints it
and exits non-zero. With ``skip=True`` the step is skipped instead (no update) and the
skipped steps are counted in the log (``skipped_steps``); ``max_skips`` bounds how many
in a row.

A training step captured in a CUDA graph (``CapturedTrainStepHook``) skips a
non-finite update on the GPU itself; this hook reads its flags one iteration later
(so that the host does not wait for the GPU after every step) and stops or counts that
step the same way, naming its iteration.

Under distributed training the ranks agree (one all-reduce of a flag per iteration):
all stop or all skip together, none waits for the others in a backward pass.
``tools/train.py`` adds the hook to every run; a config's own entry in
``custom_hooks`` (e.g. ``dict(type='NonFiniteLossHook', skip=True)``) replaces it.
"""
import functools
import math
from typing import Optional

import torch
import torch.distributed as dist
from mmengine.dist import get_world_size
from mmengine.hooks import Hook
from mmengine.optim import AmpOptimWrapper
from mmengine.registry import HOOKS

from .host_copies import LaggedValues
from ..private_api import foreach_norm


class NonFiniteLossError(RuntimeError):
    """Training stopped at a non-finite loss (the message says where and why)."""


def _is_finite(value) -> bool:
    if torch.is_tensor(value):
        return bool(torch.isfinite(value.detach()).all())
    return math.isfinite(float(value))


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Stop at (or with ``skip=True`` skip) training steps whose loss is NaN or inf.

    Args:
        skip (bool): Skip such steps (counted in the log) instead of stopping.
        max_skips (int): With ``skip``, stop anyway after this many skipped steps in a
            row (a run that keeps diverging is not recovering).
    """

    priority = 'VERY_HIGH'

    def __init__(self, skip: bool = False, max_skips: int = 100):
        self.skip = skip
        self.max_skips = max_skips
        self.skipped = 0
        self.in_a_row = 0
        self._terms = None
        self.late = LaggedValues()  # a captured step's flags, read one iteration late

    def before_train(self, runner) -> None:
        model = getattr(runner.model, 'module', runner.model)
        parse_losses = model.parse_losses

        def remembering(losses):  # the loss terms of this step, for the message
            loss, log_vars = parse_losses(losses)
            # Detached: the terms with their autograd graph would keep the whole step's
            # graph alive into the next step (and with it the parameters' gradient
            # accumulators, which a CUDA graph capture of the next step must not meet).
            self._terms = {k: v.detach() if isinstance(v, torch.Tensor) else v
                           for k, v in log_vars.items()}
            return loss, log_vars
        model.parse_losses = remembering

        wrapper = runner.optim_wrapper
        update_params = wrapper.update_params

        @functools.wraps(update_params)
        def guarded(loss, *args, **kwargs):
            if self._agree_finite(loss):
                self.in_a_row = 0
                return update_params(loss, *args, **kwargs)
            self._non_finite(runner, wrapper)
        wrapper.update_params = guarded

        if not isinstance(wrapper, AmpOptimWrapper):
            # A finite loss can still give NaN gradients; under mixed precision the
            # loss scaler skips such steps itself.
            step = wrapper.step

            # wraps: keeps mmengine's step counter mark (``_with_counter``), without
            # which the schedulers warn that the step was overridden.
            @functools.wraps(step)
            def checked_step(*args, **kwargs):
                norm = grad_norm(wrapper)
                if norm is None or self._agree_finite(norm):
                    return step(*args, **kwargs)
                self._non_finite(runner, wrapper, f'gradient norm {float(norm):g}')
            wrapper.step = checked_step

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        # A step replayed from a CUDA graph (CapturedTrainStepHook) cannot be stopped
        # from the host before its update: it skips a non-finite update on the GPU and
        # leaves its finiteness flags, read here one iteration late.
        step = getattr(runner.model, 'train_step', None)
        guard = getattr(step, 'guard', None)
        if guard:
            flags = torch.stack([f.detach().float().reshape(()) for _, f in guard])
            if get_world_size() > 1:
                dist.all_reduce(flags, op=dist.ReduceOp.MIN)  # all ranks agree
            state = dict(self._terms or {}, **{f'finite/{what}': flags[i]
                                                for i, (what, _) in enumerate(guard)})
            if getattr(step, '_norm', None) is not None:
                state['grad_norm'] = step._norm.detach()
            self._check_late(runner, self.late.swap(state, tag=runner.iter))
        else:  # an eager step: the captured one before it is due now
            self._check_late(runner, self.late.take())

    def after_train_epoch(self, runner) -> None:
        # Before the epoch's checkpoint, and so that a step's epoch is the one named.
        self._check_late(runner, self.late.take())

    after_train = after_train_epoch

    def _check_late(self, runner, ready) -> None:
        """Stop at or count the step of ``ready`` (``(state, iteration)`` of a
        captured step, read late; None: nothing due)."""
        if ready is None:
            return
        state, iteration = ready
        terms = {k: v for k, v in state.items()
                 if not k.startswith('finite/') and k != 'grad_norm'}
        for key, finite in state.items():
            if key.startswith('finite/') and not finite:
                norm = (f'gradient norm {state["grad_norm"]:g}'
                        if key == 'finite/gradients' else None)
                self._non_finite(runner, runner.optim_wrapper, norm, iteration, terms)
                return
        self.in_a_row = 0

    @staticmethod
    def _agree_finite(value) -> bool:
        return NonFiniteLossHook._agree(torch.isfinite(value.detach()).all())

    @staticmethod
    def _agree(flag: torch.Tensor) -> bool:
        """``flag`` (a boolean tensor) is True on every rank."""
        flag = flag.float().reshape(1)
        if get_world_size() > 1:
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item())

    def _non_finite(self, runner, wrapper, gradient: Optional[str] = None,
                    iteration: Optional[int] = None, terms: Optional[dict] = None) -> None:
        """``iteration`` (0-based; default the current one) and ``terms`` (default
        the step's own): of a step checked late."""
        self.in_a_row += 1
        iteration = runner.iter if iteration is None else iteration
        if self.skip and self.in_a_row <= self.max_skips:
            self.skipped += 1
            wrapper.zero_grad()
            runner.message_hub.update_scalar('train/skipped_steps', self.skipped)
            runner.logger.warning(
                f'non-finite {"gradients" if gradient else "loss"} at iteration '
                f'{iteration + 1} ({self._describe_terms(gradient, terms)}): step '
                f'skipped, {self.skipped} so far')
            return
        raise NonFiniteLossError(self._message(runner, wrapper, gradient, iteration, terms))

    def _describe_terms(self, gradient: Optional[str] = None,
                        terms: Optional[dict] = None) -> str:
        if gradient:
            return f'{gradient}, loss finite'
        terms = (self._terms if terms is None else terms) or {}
        bad = [f'{k}={float(v):g}' for k, v in terms.items() if not _is_finite(v)]
        good = [k for k, v in terms.items() if _is_finite(v)]
        text = 'non-finite: ' + (', '.join(bad) or 'the loss')
        return text + (f'; finite: {", ".join(good)}' if good else '')

    def _message(self, runner, wrapper, gradient: Optional[str] = None,
                 iteration: Optional[int] = None, terms: Optional[dict] = None) -> str:
        lrs = sorted({g['lr'] for g in wrapper.optimizer.param_groups})
        from .resume import newest_checkpoint
        newest = newest_checkpoint(runner.work_dir)[0]
        fp16 = isinstance(wrapper, AmpOptimWrapper) and wrapper.cast_dtype in (
            None, torch.float16)
        why = [f'a learning rate too high for this batch (now {lrs[-1]:g})']
        if fp16:
            model = getattr(runner.model, 'module', runner.model)
            backbone = type(getattr(model, 'backbone', None)).__name__
            upstream = ('; BiFormer has been reported to give NaN in fp16 upstream'
                        if backbone == 'BiFormer' else '')
            why.append(f'fp16 overflow ({type(model).__name__} in float16 mixed '
                       f'precision{upstream}): try '
                       "optim_wrapper.dtype='bfloat16' where the GPU has it, or fp32")
        where = (f'The newest checkpoint, {newest}, holds the last finite state: start '
                 f'again from its weights with a lower learning rate (--work-dir NEW_DIR '
                 f'--cfg-options load_from={newest} optim_wrapper.optimizer.lr=LR).'
                 if newest else 'No checkpoint was written yet.')
        skip = ("To skip such steps instead, add to the config: custom_hooks = "
                "[dict(type='NonFiniteLossHook', skip=True)].")
        stopped = (f' after {self.skipped} skipped steps ({self.in_a_row - 1} in a row)'
                   if self.skip else '')
        what = 'gradients' if gradient else 'loss'
        iteration = runner.iter if iteration is None else iteration
        return (f'training stopped{stopped}: non-finite {what} at iteration '
                f'{iteration + 1} (epoch {runner.epoch + 1}), before its update: '
                f'{self._describe_terms(gradient, terms)}. Likely cause: '
                f'{"; or ".join(why)}. '
                f'{where} {skip}')


def grad_norm(wrapper) -> Optional[torch.Tensor]:
    """The total 2-norm of the optimizer's gradients (None without gradients)."""
    grads = [p.grad for g in wrapper.optimizer.param_groups for p in g['params']
             if p.grad is not None]
    if not grads:
        return None
    return torch.linalg.vector_norm(torch.stack(foreach_norm(grads)))
