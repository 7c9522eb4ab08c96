"""Every private attribute of mmengine (0.10.7) and torch that mmbiformer relies on,
each behind one function here.

The captured steps bypass ``OptimWrapper.update_params`` and ``BaseModel.train_step``
(a CUDA graph replays their work), so they must keep the wrappers' books and reach
their inner calls themselves. ``tests/test_private_api.py`` checks each of these names
against the installed versions: a version that renames one fails there, by name, not
in the middle of a training run.
"""
import contextlib
from collections import defaultdict
from typing import Iterator, Sequence, Tuple

import torch


# -- mmengine ------------------------------------------------------------------------------
def accumulative_counts(optim_wrapper) -> int:
    """Gradient accumulation steps of an ``OptimWrapper`` (1 when off)."""
    return getattr(optim_wrapper, '_accumulative_counts', 1)


def run_forward(model, data, mode: str = 'loss'):
    """``BaseModel._run_forward`` (or ``MMDistributedDataParallel``'s): the model's
    forward on preprocessed ``data`` (a dict or a tuple), as ``train_step`` calls it."""
    return model._run_forward(data, mode=mode)


def scale_update_param(amp_optim_wrapper):
    """What ``AmpOptimWrapper.step`` passes to ``GradScaler.update`` (None, or the
    fixed scale of ``loss_scale=<number>``)."""
    return amp_optim_wrapper._scale_update_param


def count_step(optim_wrapper) -> None:
    """The counts an ``OptimWrapper`` keeps per step: the inner iteration
    (``backward`` adds one) and, in versions that have it, the global step."""
    optim_wrapper._inner_count += 1
    if hasattr(optim_wrapper, '_global_step'):
        optim_wrapper._global_step += 1


# -- torch ---------------------------------------------------------------------------------
@contextlib.contextmanager
def dispatch_watch(seen):
    """Calls ``seen(func, tensors, kwargs)`` for every aten (or custom) op dispatched
    inside the block, with the op's tensor arguments (``TorchDispatchMode``)."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    class _Watch(TorchDispatchMode):

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            leaves = tree_flatten((args, kwargs))[0]
            seen(func, [t for t in leaves if isinstance(t, torch.Tensor)], kwargs)
            return func(*args, **kwargs)

    with _Watch():
        yield


def saved_tensors_hooks_in_effect():
    """The ``(pack, unpack)`` pair of the innermost ``saved_tensors_hooks`` block around
    the caller (an activation checkpoint's, a memory count's), or None: a nested block's
    hooks replace the outer ones, so hooks that should compose call these."""
    return torch._C._autograd._top_saved_tensors_default_hooks(False)


def let_scaler_hand_over_found_inf(optimizer: torch.optim.Optimizer) -> None:
    """``GradScaler.step`` then passes ``found_inf`` and the scale to the optimizer's
    (fused) step, which skips on the GPU, instead of checking on the host."""
    optimizer._step_supports_amp_scaling = True


def reset_scaler_step_state(scaler: torch.amp.GradScaler) -> None:
    """Forget ``scaler``'s per-optimizer state of the current step (unscaled, stepped),
    as ``GradScaler.update`` does at a step's end."""
    scaler._per_optimizer_states = defaultdict(
        torch.amp.grad_scaler._refresh_per_optimizer_state)


def foreach_copy_(dst: Sequence[torch.Tensor], src: Sequence[torch.Tensor]) -> None:
    """``dst[i].copy_(src[i])`` for all ``i`` in as few kernels as possible: one
    multi-tensor copy per pair of dtypes (PyTorch copies a list of mixed dtypes one
    tensor at a time)."""
    groups = {}
    for d, s in zip(dst, src):
        pair = groups.setdefault((d.dtype, s.dtype), ([], []))
        pair[0].append(d)
        pair[1].append(s)
    for d, s in groups.values():
        torch._foreach_copy_(d, s)


def foreach_lerp_(dst: Sequence[torch.Tensor], end: Sequence[torch.Tensor],
                  weight: float) -> None:
    """``dst[i].lerp_(end[i], weight)`` for all ``i`` in as few kernels as possible."""
    torch._foreach_lerp_(list(dst), list(end), weight)


def foreach_norm(tensors: Sequence[torch.Tensor]) -> Sequence[torch.Tensor]:
    """The 2-norm of each tensor, in as few kernels as possible."""
    return torch._foreach_norm(list(tensors))


def has_hooks(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` has gradient hooks of its own (``register_hook``)."""
    return bool(tensor._backward_hooks)


def module_parameters(module: torch.nn.Module) -> Iterator[Tuple[str, torch.Tensor]]:
    """The parameters ``module`` holds itself (not its children's), by name."""
    return iter(list(module._parameters.items()))


def set_module_parameter(module: torch.nn.Module, name: str, tensor: torch.Tensor) -> None:
    """Put ``tensor`` in ``module``'s parameter slot ``name``, bypassing
    ``nn.Module.__setattr__``'s checks (a stand-in leaf that is not a new parameter)."""
    module._parameters[name] = tensor


@contextlib.contextmanager
def holding_graph_pool(pool: tuple, device: torch.device):
    """Holds the CUDA graph memory pool ``pool`` (a ``torch.cuda.graph_pool_handle()``,
    made here if new) until the end, and routes every allocation on ``device`` into
    it, whatever thread or stream makes it (the autograd engine's backward thread
    too, which ``torch.cuda.use_mem_pool`` misses), until the function it yields is
    called. Graphs captured into the pool meanwhile hold it after the end: a pool
    nothing holds is freed, and cannot be captured into again."""
    index = torch.device(device).index
    index = torch.cuda.current_device() if index is None else index
    torch._C._cuda_beginAllocateToPool(index, pool)
    routing = [True]

    def stop_routing():
        if routing[0]:
            routing[0] = False
            torch._C._cuda_endAllocateToPool(index, pool)

    try:
        yield stop_routing
    finally:
        stop_routing()
        torch._C._cuda_releasePool(index, pool)


def copy_batches_without_waiting(preprocessor) -> None:
    """Make an mmengine data preprocessor copy batches to its device with
    ``non_blocking=True`` (``BaseDataPreprocessor.cast_data`` reads
    ``_non_blocking``; mmpretrain's ``ClsDataPreprocessor`` takes no argument for it)."""
    preprocessor._non_blocking = True
