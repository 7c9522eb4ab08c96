"""Capture the backbone's training graphs for the config's input sizes before training.

A backbone replayed as CUDA graphs per input size (``runtime.cuda_graph``) captures
each size the first time a batch of it comes: a warm-up pass, the capture and the
graph's instantiation stall that iteration, and in data-parallel training every rank
waits at the next collective for the one that captures. The sizes are known from the
config: its training pipeline's keep-ratio resize (with mmdet's aspect-ratio batches,
both images of a batch share an orientation) padded as the runtime pads, or its crop
(``mmbiformer/utils/kernel_warmup.py``, :func:`plan`, which ``tools/compile_kernels.py``
uses too). :class:`CaptureAheadHook` captures them all before the first iteration, on
every rank, and says what it took; sizes outside the plan are still captured when they
come. Use it as ``custom_hooks = [dict(type='CaptureAheadHook')]``.
"""
import time

import torch
from mmengine.hooks import Hook
from mmengine.optim import AmpOptimWrapper
from mmengine.registry import HOOKS

from .rank_log import log_every_rank


def training_autocast_dtype(optim_wrapper):
    """The dtype mmengine's ``optim_context`` casts training to (None: fp32)."""
    if not isinstance(optim_wrapper, AmpOptimWrapper):
        return None
    return getattr(optim_wrapper, 'cast_dtype', None) or torch.float16


@HOOKS.register_module()
class CaptureAheadHook(Hook):
    """Before training, capture the backbone's graphs for every planned input size
    (module docstring). Does nothing where the backbone has no graphs to capture (no
    ``runtime.cuda_graph``, no GPU, SyncBN across processes)."""

    priority = 'LOW'  # after the hooks that set the model up (frozen stages, EMA)

    def before_train(self, runner) -> None:
        from ..utils.kernel_warmup import plan
        model = getattr(runner.model, 'module', runner.model)
        backbone = getattr(model, 'backbone', None)
        runtime = getattr(backbone, 'runtime', None)
        if runtime is None or not hasattr(runtime, 'capture_ahead'):
            return
        sizes = plan(runner.cfg)['train']
        loader = runner.train_dataloader  # mmdet's batches come from a batch sampler
        batch = loader.batch_size or getattr(loader.batch_sampler, 'batch_size', None)
        if not sizes or not batch:
            return
        start = time.perf_counter()
        captured = runtime.capture_ahead(backbone, batch, sizes,
                                         training_autocast_dtype(runner.optim_wrapper))
        if captured:
            log_every_rank(f'CaptureAheadHook: {type(backbone).__name__} graphs captured '
                           f'for {captured} input sizes of {batch} images before training '
                           f'in {time.perf_counter() - start:.1f} s')
