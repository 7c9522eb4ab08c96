"""Capture the backbone's training graphs for the config's input sizes before training.

A backbone replayed as CUDA graphs per input size (``cuda_graph`` of its runtime,
:class:`~.backbone_runtime_hook.BackboneRuntimeHook`) captures
each size the first time a batch of it comes: a warm-up pass, the capture and the
graph's instantiation stall that iteration, and in data-parallel training every rank
waits at the next collective for the one that captures. The sizes are known from the
config: its training pipeline's keep-ratio resize (with mmdet's aspect-ratio batches,
both images of a batch share an orientation) padded as the runtime pads, or its crop
(``mmbiformer/engine/kernel_warmup.py``, :func:`plan`, which ``tools/compile_kernels.py``
uses too). :class:`CaptureAheadHook` captures them all before the first iteration, on
every rank, and says what it took; sizes outside the plan are still captured when they
come. Where the runtime replays inference graphs (``inference_graphs``), it does the
same before the first validation or test: every padded size the test pipeline can make
(43 for COCO at 1333x800), so that no image of the first pass waits for a capture.
Use it after the runtime's hook: ``custom_hooks = [dict(type='BackboneRuntimeHook',
cuda_graph=...), dict(type='CaptureAheadHook')]``.
"""
import time

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from .backbone_runtime import runtime_of
from .captured_train_step import training_autocast_dtype
from .rank_log import log_every_rank


@HOOKS.register_module()
class CaptureAheadHook(Hook):
    """Before training, capture the backbone's graphs for every planned input size
    (module docstring). Does nothing where the backbone has no graphs to capture (no
    ``cuda_graph`` runtime, no GPU, SyncBN across processes)."""

    priority = 'LOW'  # after the hooks that set the model up (frozen stages, EMA)

    def __init__(self):
        self.inference_done = False

    @staticmethod
    def _backbone(runner):
        model = getattr(runner.model, 'module', runner.model)
        backbone = getattr(model, 'backbone', None)
        runtime = runtime_of(backbone) if backbone is not None else None
        return (backbone, runtime) if runtime is not None else (None, None)

    def _ahead(self, runner, loader, dtype, inference: bool) -> None:
        from .kernel_warmup import EVERY_ASPECT, plan
        backbone, runtime = self._backbone(runner)
        if runtime is None:
            return
        sizes = plan(runner.cfg, EVERY_ASPECT)['test' if inference else 'train']
        # mmdet's training batches come from a batch sampler.
        batch = loader.batch_size or getattr(loader.batch_sampler, 'batch_size', None)
        if not sizes or not batch:
            return
        start = time.perf_counter()
        captured = runtime.capture_ahead(backbone, batch, sizes, dtype, inference=inference)
        if captured:
            what = 'inference graphs' if inference else 'graphs'
            log_every_rank(f'CaptureAheadHook: {type(backbone).__name__} {what} captured '
                           f'for {captured} input sizes of {batch} images in '
                           f'{time.perf_counter() - start:.1f} s')

    def before_train(self, runner) -> None:
        self._ahead(runner, runner.train_dataloader,
                    training_autocast_dtype(runner.optim_wrapper), inference=False)

    def _before_inference(self, runner, loop) -> None:
        if not self.inference_done:  # the graphs stay for every later pass
            self.inference_done = True
            dtype = torch.float16 if getattr(loop, 'fp16', False) else None
            self._ahead(runner, loop.dataloader, dtype, inference=True)

    def before_val(self, runner) -> None:
        self._before_inference(runner, runner.val_loop)

    def before_test(self, runner) -> None:
        self._before_inference(runner, runner.test_loop)
