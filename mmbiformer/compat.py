"""Process-wide fixes for known breakages of the pinned OpenMMLab stack on current
packages, kept only where nothing narrower works (each applied one is logged once at
debug level; the README lists them). mmcv's half-precision gaps are fixed by
components our configs name instead (``mmbiformer.models.det.mixed_precision``).

Applied once by ``import mmbiformer.openmmlab`` (configs pull it in with
``custom_imports``) or ``mmbiformer.models``; never by the op layer:

* torch >= 2.6 loads with ``weights_only=True``, and mmengine 0.10.7's plain
  ``torch.load`` then refuses the checkpoints its own Runner saved (``HistoryBuffer``
  and numpy values in ``message_hub``). We allow-list exactly those types for safe
  loading, and save HistoryBuffer without its method references (``getattr`` calls);
  arbitrary objects and calls stay forbidden.
* transformers >= 5 breaks ``import mmpretrain.models`` (its BLIP code) and with it
  ``import mmdet.models`` when mmpretrain is installed. mmpretrain's multimodal
  models are switched off (mmbiformer uses none of them).
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
    # argparse.Namespace: official BiFormer checkpoints may keep their ``args``. bytes:
    # pickle's protocol 2 (torch.save's) writes an empty bytes object as ``bytes()``,
    # as the buffer of an empty numpy array in a HistoryBuffer never updated.
    torch.serialization.add_safe_globals(
        [HistoryBuffer, argparse.Namespace, collections.Counter, bytes,
         *_numpy_safe_globals()])


def _major_version(package: str) -> int:
    try:
        return int(metadata.version(package).split('.')[0])
    except (metadata.PackageNotFoundError, ValueError):
        return 0


def disable_broken_mmpretrain_multimodal() -> bool:
    """Turn off mmpretrain's multimodal models where transformers >= 5 breaks them."""
    if _major_version('transformers') < 5:
        return False
    try:
        import mmpretrain.utils.dependency as dependency
    except ImportError:
        return False
    dependency.WITH_MULTIMODAL = False
    return True


def apply() -> None:
    """Apply each fix that this environment needs; log each one once (debug level)."""
    from mmengine.logging import print_log
    from . import torchvision_stub
    applied = []
    if torchvision_stub.install():
        applied.append('torchvision is missing: installed the minimal stand-in '
                       '(mmbiformer.torchvision_stub) so that mmpretrain imports')
    allow_runner_checkpoints()
    applied.append('allow-listed mmengine HistoryBuffer and numpy types for '
                   'torch.load(weights_only=True) of Runner checkpoints')
    if disable_broken_mmpretrain_multimodal():
        applied.append('transformers >= 5: mmpretrain multimodal models switched off')
    for message in applied:
        if message not in _LOGGED:
            _LOGGED.add(message)
            print_log(f'mmbiformer.compat: {message}', logger='current', level=10)


_LOGGED = set()
