"""The one timer of the benchmarks, the deployment check and the dev scripts."""
import statistics
import time

import torch


def mean_ms(fn, iters: int, warmup: int = 3, device=None) -> float:
    """Mean milliseconds of one call of ``fn`` after ``warmup`` calls. On a CUDA
    ``device`` it is the GPU's time between events around the calls (the kernels ``fn``
    queues included); elsewhere the wall clock's."""
    for _ in range(warmup):
        fn()
    cuda = device is not None and torch.device(device).type == 'cuda'
    if not cuda:
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        return (time.perf_counter() - start) * 1000 / iters
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters


def median_ms(fn, runs: int, warmup: int = 3) -> float:
    """Median wall-clock milliseconds of ``runs`` calls of a host-synchronous ``fn``
    (CPU inference), after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def cuda_profile(fn, steps: int):
    """PyTorch's profiler (CUDA kernels) over ``steps`` calls of ``fn``, after as many
    warm-up calls; read it with ``.events()`` or ``.key_averages()``."""
    from torch.profiler import ProfilerActivity, profile
    for _ in range(steps):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            fn()
        torch.cuda.synchronize()
    return prof
