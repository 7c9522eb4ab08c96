"""Device values read on the host one step late, so that the host never waits for them.

Reading a GPU tensor's value on the host (``.item()``, ``float()``, ``bool()``) waits
until the GPU has finished everything queued before it. Done after every training
iteration (mmengine's ``RuntimeInfoHook`` reads each loss term so), it leaves the GPU
idle while the host loads and prepares the next batch. :class:`LaggedValues` starts a
copy into pinned host memory instead and hands the values over at the next call, when
that copy has long finished.
"""
from typing import Any, Dict, Optional, Tuple

import torch


def _is_device_tensor(value) -> bool:
    return torch.is_tensor(value) and value.is_cuda


def _as_number(value):
    if torch.is_tensor(value):
        return value.item() if value.numel() == 1 else value.tolist()
    return value


class LaggedValues:
    """Values of one step (name -> tensor or number), given back as Python numbers
    one call of :meth:`swap` later.

    Args:
        lag (bool, optional): Hand values over one call late even without GPU tensors
            (tests); by default only sets holding a GPU tensor are late, others come
            back at once.
    """

    def __init__(self, lag: Optional[bool] = None):
        self.lag = lag
        self._pending: Optional[Tuple[Optional[torch.cuda.Event], Dict[str, Any], Any]] = None

    def swap(self, values: Dict[str, Any], tag: Any = None) -> Optional[Tuple[dict, Any]]:
        """Start reading ``values`` (with ``tag``, e.g. the iteration); return the
        previous late set as ``(numbers, tag)``, or this one at once if it need not
        wait (no GPU tensor), or None."""
        on_gpu = any(_is_device_tensor(v) for v in values.values())
        if not on_gpu and not self.lag:
            return {k: _as_number(v) for k, v in values.items()}, tag
        copies, event = {}, None
        for key, value in values.items():
            if _is_device_tensor(value):
                host = torch.empty(value.shape, dtype=value.dtype, pin_memory=True)
                copies[key] = host.copy_(value.detach(), non_blocking=True)
            elif torch.is_tensor(value):
                copies[key] = value.detach().clone()
            else:
                copies[key] = value
        if on_gpu:
            event = torch.cuda.Event()
            event.record()
        previous, self._pending = self._pending, (event, copies, tag)
        return self._ready(previous)

    def take(self) -> Optional[Tuple[dict, Any]]:
        """The late set, waited for (None if there is none): at the end of an epoch
        or of training."""
        previous, self._pending = self._pending, None
        return self._ready(previous)

    @staticmethod
    def _ready(entry) -> Optional[Tuple[dict, Any]]:
        if entry is None:
            return None
        event, copies, tag = entry
        if event is not None:
            event.synchronize()
        return {k: _as_number(v) for k, v in copies.items()}, tag
