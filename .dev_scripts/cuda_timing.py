"""CUDA-event timing shared by the dev scripts: ``cuda_us(fn)`` is the mean time of one
call of ``fn`` in microseconds, after warm-up calls."""
import torch


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
