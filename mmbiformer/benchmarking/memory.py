"""Where a training step's memory goes: parameters, optimizer state, gradients, what
the forward keeps for the backward (by the op that keeps it), and the rest of the
peak (temporaries, workspaces, the allocator's rounding). Measured on one eager step
that runs the captured step's kernels (``captured_step()``): a CUDA graph replays the
same allocations from its pool.

    python3 tools/benchmark.py cls --memory [--timm NAME]
    python3 tools/benchmark.py trunk --memory
"""
from typing import Callable, Dict, Iterable

import torch

GiB = 2**30


def storage_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the distinct storages under ``tensors`` (views of one count once)."""
    seen = {}
    for t in tensors:
        if t is not None and t.device.type != 'meta':
            s = t.untyped_storage()
            seen[s.data_ptr()] = s.nbytes()
    return sum(seen.values())


def _kept_by(t: torch.Tensor) -> str:
    fn = getattr(t, 'grad_fn', None)
    return 'inputs and leaves' if fn is None else type(fn).__name__


def breakdown(params: Iterable[torch.Tensor], optimizer, loss_fn: Callable[[], torch.Tensor],
              device) -> Dict:
    """Run ``loss_fn()`` (the forward), its backward and ``optimizer.step()`` twice (the
    first creates the optimizer's state), measuring the second; sizes in GiB. Saved
    tensors are counted once per storage and grouped by the autograd node of the
    tensor that was saved (the op that made it; 'inputs and leaves' for parameters'
    casts' inputs and the batch)."""
    params = list(params)
    param_ptrs = {p.untyped_storage().data_ptr() for p in params}
    for _ in range(2):
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        kept: Dict[int, tuple] = {}

        def pack(t):
            s = t.untyped_storage()
            if s.data_ptr() not in param_ptrs:
                kept[s.data_ptr()] = (s.nbytes(), _kept_by(t))
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = loss_fn()
        after_forward = torch.cuda.memory_allocated(device)
        loss.backward()
        del loss
        optimizer.step()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
    grads = storage_bytes(p.grad for p in params)
    state = optimizer_state_bytes(optimizer)
    by_op: Dict[str, int] = {}
    for nbytes, op in kept.values():
        by_op[op] = by_op.get(op, 0) + nbytes
    saved = sum(by_op.values())
    rows = {'parameters': storage_bytes(params), 'optimizer state': state,
            'gradients (after the step)': grads,
            'kept by the forward for the backward': saved,
            'allocated at the forward\'s end, over the start': after_forward - start,
            'peak of the step': peak,
            'peak over parameters, state and gradients': peak - start}
    return dict(rows={k: v / GiB for k, v in rows.items()},
                saved_by_op={k: v / GiB for k, v in sorted(by_op.items(),
                                                            key=lambda kv: -kv[1])})


def optimizer_state_bytes(optimizer) -> int:
    if optimizer is None:  # several optimizers (a wrapper dict): not counted
        return 0
    return storage_bytes(t for s in optimizer.state.values() for t in s.values()
                         if torch.is_tensor(t))


def run_parts(model: torch.nn.Module, optimizer) -> Dict[str, float]:
    """Where a training run's GPU memory sits at this moment, in GiB, with the run's
    peaks: parameters, their gradients, the optimizer's state, the CUDA graphs' private
    pools (their free part: where a replayed graph's activations live), and the
    allocator's peaks of allocated and reserved memory (reserved beyond allocated and
    the pools' free part: cached blocks, fragmentation)."""
    from ..engine.shape_graphs import graph_pools
    params = list(model.parameters())
    held, spare = graph_pools()
    parts = {'parameters': storage_bytes(params),
             'gradients': storage_bytes(p.grad for p in params),
             'optimizer state': optimizer_state_bytes(optimizer),
             "graphs' pools": held, "graphs' pools, free": spare,
             'peak allocated': torch.cuda.max_memory_allocated(),
             'peak reserved': torch.cuda.max_memory_reserved()}
    return {k: v / GiB for k, v in parts.items()}


def format_breakdown(result: Dict, top: int = 12) -> str:
    lines = ['| memory | GiB |', '|---|---|']
    lines += [f'| {k} | {v:.2f} |' for k, v in result['rows'].items()]
    lines += ['', '| kept for the backward, by the op that made it | GiB |', '|---|---|']
    lines += [f'| {k} | {v:.3f} |' for k, v in list(result['saved_by_op'].items())[:top]]
    return '\n'.join(lines)
