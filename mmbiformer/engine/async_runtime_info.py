"""mmengine's ``RuntimeInfoHook`` without making the host wait for the GPU each iteration.

Two waits sit in mmengine's training loop between one step and the next, and with a
step replayed from a CUDA graph (``CapturedTrainStepHook``) they are most of what the
host does: while it waits, then loads and copies the next batch, the GPU is idle.

* ``RuntimeInfoHook.after_train_iter`` reads every loss term with ``.item()``;
* the data preprocessor copies the batch to the GPU with ``non_blocking=False``, which
  waits for the GPU's queue to drain (mmpretrain's ``ClsDataPreprocessor`` takes no
  ``non_blocking`` argument).

:class:`AsyncRuntimeInfoHook` replaces ``RuntimeInfoHook``: the step's outputs on the
GPU reach the message hub one iteration late (:class:`~.host_copies.LaggedValues`),
and the batch is copied without waiting (from pinned memory, which the loaders pin).
So a log line's window of losses ends one iteration before the line; the last
iteration's values are added at the end of each epoch, before validation and at the
end of training. Use it as ``default_hooks = dict(runtime_info=dict(type='AsyncRuntimeInfoHook'))``.
"""
from mmengine.hooks import RuntimeInfoHook
from mmengine.registry import HOOKS

from .host_copies import LaggedValues
from ..private_api import copy_batches_without_waiting


@HOOKS.register_module()
class AsyncRuntimeInfoHook(RuntimeInfoHook):
    """``RuntimeInfoHook`` whose training outputs reach the message hub one
    iteration late, and whose model copies batches to the GPU without waiting
    (module docstring)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.late = LaggedValues()

    def before_train(self, runner) -> None:
        super().before_train(runner)
        model = getattr(runner.model, 'module', runner.model)
        preprocessor = getattr(model, 'data_preprocessor', None)
        if preprocessor is not None:
            copy_batches_without_waiting(preprocessor)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if outputs:
            self._update(runner, self.late.swap(outputs))

    def _update(self, runner, ready) -> None:
        if ready is not None:
            for key, value in ready[0].items():
                runner.message_hub.update_scalar(f'train/{key}', value)

    def _flush(self, runner) -> None:
        self._update(runner, self.late.take())

    def after_train_epoch(self, runner) -> None:
        self._flush(runner)

    def before_val(self, runner) -> None:
        self._flush(runner)
        super().before_val(runner)

    def after_train(self, runner) -> None:
        self._flush(runner)
        super().after_train(runner)
