"""CUDA timing shared by the dev scripts: ``cuda_us(fn)`` is the mean time of one call
of ``fn`` in microseconds, after warm-up calls; ``cuda_profile(fn, steps)`` PyTorch's
profiler over ``steps`` calls, after as many warm-up calls."""
import torch
from torch.profiler import ProfilerActivity, profile


def cuda_us(fn, iters: int = 30, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(True), torch.cuda.Event(True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters * 1000


def cuda_profile(fn, steps: int):
    """The profiler (CUDA kernels) of ``steps`` calls of ``fn`` after ``steps`` warm-up
    calls; read it with ``.events()`` or ``.key_averages()``."""
    for _ in range(steps):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            fn()
        torch.cuda.synchronize()
    return prof
