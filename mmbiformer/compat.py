"""Fixes for known breakages of the pinned OpenMMLab stack on current packages.

Applied once on ``import mmbiformer`` (configs pull it in with ``custom_imports``):

* torch >= 2.6 loads with ``weights_only=True``, and mmengine 0.10.7's plain
  ``torch.load`` then refuses the checkpoints its own Runner saved (``HistoryBuffer``
  and numpy values in ``message_hub``). We allow-list exactly those types for safe
  loading, and save HistoryBuffer without its method references (``getattr`` calls);
  arbitrary objects and calls stay forbidden.
* transformers >= 5 breaks ``import mmpretrain.models`` (its BLIP code) and with it
  ``import mmdet.models`` when mmpretrain is installed. mmpretrain's multimodal
  models are switched off (mmbiformer uses none of them).
* mmcv 2.1.0's RoIAlign has no bfloat16 kernel (CPU or CUDA), so bf16 autocast broke
  Mask R-CNN: bf16 inputs are aligned in fp32 and the result is cast back.
* mmcv 2.1.0's sigmoid focal loss (RetinaNet) runs in its input's dtype: under fp16
  autocast, logits below about -11 make ``exp`` overflow and ``log(p)`` of an
  underflowed ``p`` gives NaN (``loss_cls: nan`` after some iterations, then every
  AMP step is skipped); it has no bf16 kernel. It is computed in fp32 instead.
* mmpretrain 1.2.0 cannot be imported without torchvision, and no torchvision build
  exists for some torch builds (torch 2.13 CPU): a minimal stand-in is installed
  then (:mod:`mmbiformer.torchvision_stub`).
"""
import argparse
import collections
from importlib import metadata

import numpy as np
import torch


def _numpy_safe_globals() -> list:
    core = getattr(np, '_core', None) or np.core
    dtype_classes = {type(np.dtype(t)) for t in set(np.sctypeDict.values())}
    return [core.multiarray._reconstruct, core.multiarray.scalar, np.ndarray, np.dtype,
            *sorted(dtype_classes, key=lambda c: c.__name__)]


_DEFAULT_STATISTICS = ('min', 'max', 'current', 'mean')


def _history_buffer_getstate(self) -> dict:
    # mmengine pickles the built-in statistics methods by reference, i.e. as calls of
    # ``getattr(HistoryBuffer, 'min')``, which a safe load must refuse (getattr would
    # reach any attribute). They are restored by ``__setstate__`` anyway: leave them out.
    state = dict(self.__dict__)
    state.pop('_statistics_methods', None)
    state['statistics_methods'] = {
        k: v for k, v in self._statistics_methods.items() if k not in _DEFAULT_STATISTICS}
    return state


def allow_runner_checkpoints() -> None:
    """Let ``torch.load(weights_only=True)`` read mmengine Runner checkpoints."""
    from mmengine.logging import HistoryBuffer
    HistoryBuffer.__getstate__ = _history_buffer_getstate
    if not hasattr(torch.serialization, 'add_safe_globals'):
        return  # torch < 2.4 loads without weights_only by default
    # argparse.Namespace: official BiFormer checkpoints may keep their ``args``.
    torch.serialization.add_safe_globals(
        [HistoryBuffer, argparse.Namespace, collections.Counter, *_numpy_safe_globals()])


def _major_version(package: str) -> int:
    try:
        return int(metadata.version(package).split('.')[0])
    except (metadata.PackageNotFoundError, ValueError):
        return 0


def disable_broken_mmpretrain_multimodal() -> None:
    """Turn off mmpretrain's multimodal models where transformers >= 5 breaks them."""
    if _major_version('transformers') < 5:
        return
    try:
        import mmpretrain.utils.dependency as dependency
    except ImportError:
        return
    dependency.WITH_MULTIMODAL = False


def roi_align_in_fp32_for_bf16() -> None:
    """Run mmcv's RoIAlign in fp32 for bf16 inputs (it has no bf16 kernel)."""
    try:
        from mmcv.ops import RoIAlign
    except ImportError:  # mmcv without compiled ops
        return
    if getattr(RoIAlign.forward, '_mmbiformer_bf16', False):
        return
    forward = RoIAlign.forward

    def forward_bf16_safe(self, input, rois):
        if input.dtype == torch.bfloat16 or rois.dtype == torch.bfloat16:
            return forward(self, input.float(), rois.float()).to(input.dtype)
        return forward(self, input, rois)

    forward_bf16_safe._mmbiformer_bf16 = True
    RoIAlign.forward = forward_bf16_safe


def _fp32_focal_loss_forward(forward):
    def forward_fp32(ctx, input, target, gamma=2.0, alpha=0.25, weight=None,
                     reduction='mean'):
        if input.dtype in (torch.float16, torch.bfloat16):
            input = input.float()
            weight = None if weight is None else weight.float()
        # Autograd casts the fp32 input gradient back to the caller's dtype.
        return forward(ctx, input, target, gamma, alpha, weight, reduction)

    forward_fp32._mmbiformer_fp32 = True
    return forward_fp32


def focal_loss_in_fp32() -> None:
    """Compute mmcv's sigmoid focal loss in fp32 for fp16/bf16 logits."""
    try:
        from mmcv.ops.focal_loss import SigmoidFocalLossFunction
    except ImportError:  # mmcv without compiled ops
        return
    if getattr(SigmoidFocalLossFunction.forward, '_mmbiformer_fp32', False):
        return
    SigmoidFocalLossFunction.forward = staticmethod(
        _fp32_focal_loss_forward(SigmoidFocalLossFunction.forward))


def apply() -> None:
    from . import torchvision_stub
    torchvision_stub.install()
    allow_runner_checkpoints()
    disable_broken_mmpretrain_multimodal()
    roi_align_in_fp32_for_bf16()
    focal_loss_in_fp32()
