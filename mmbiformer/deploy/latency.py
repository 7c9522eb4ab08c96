"""CPU latency of an exported model in onnxruntime against PyTorch eager."""
from typing import Tuple

import torch

from ..benchmarking.timing import median_ms


def cpu_latency(module: torch.nn.Module, onnx_path: str, shape: Tuple[int, ...],
                runs: int, dtype=torch.float32) -> Tuple[float, float]:
    """(onnxruntime ms, PyTorch eager ms): medians of ``runs`` runs on one input."""
    import onnxruntime as ort
    x = torch.rand(*shape, dtype=dtype) * 255
    session = ort.InferenceSession(onnx_path, providers=['CPUExecutionProvider'])
    feed = {session.get_inputs()[0].name: x.numpy()}
    ort_ms = median_ms(lambda: session.run(None, feed), runs)
    with torch.no_grad():
        torch_ms = median_ms(lambda: module(x), runs)
    return ort_ms, torch_ms
