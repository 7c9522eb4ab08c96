"""CPU latency of an exported model in onnxruntime against PyTorch eager."""
import statistics
import time
from typing import Tuple

import torch


def _median_ms(fn, runs: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def cpu_latency(module: torch.nn.Module, onnx_path: str, shape: Tuple[int, ...],
                runs: int, dtype=torch.float32) -> Tuple[float, float]:
    """(onnxruntime ms, PyTorch eager ms): medians of ``runs`` runs on one input."""
    import onnxruntime as ort
    x = torch.rand(*shape, dtype=dtype) * 255
    session = ort.InferenceSession(onnx_path, providers=['CPUExecutionProvider'])
    feed = {session.get_inputs()[0].name: x.numpy()}
    ort_ms = _median_ms(lambda: session.run(None, feed), runs)
    with torch.no_grad():
        torch_ms = _median_ms(lambda: module(x), runs)
    return ort_ms, torch_ms
