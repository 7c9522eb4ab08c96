"""The ``memory`` that training logs, as the GPU footprint a user sizes batches by.

mmengine logs ``torch.cuda.max_memory_allocated``: memory held by live tensors. CUDA
graphs' private pools (the backbone's graphs in the dense configs, the captured
classification step) hold activations that this leaves out, so the log understated
what a run needs by gigabytes. :class:`FootprintLogProcessor` logs the
peak memory reserved by PyTorch's allocator instead (pools and cache included: what
the process holds on the GPU), over the same interval.
"""
import torch
from mmengine.registry import LOG_PROCESSORS
from mmengine.runner import LogProcessor


@LOG_PROCESSORS.register_module()
class FootprintLogProcessor(LogProcessor):
    """mmengine's ``LogProcessor`` whose ``memory`` (MiB) is the peak reserved."""

    _said = False

    def _get_max_memory(self, runner) -> int:
        if not FootprintLogProcessor._said:  # once per process: what the figure is
            FootprintLogProcessor._said = True
            runner.logger.info(
                "'memory' below: peak GPU memory (MiB) reserved by PyTorch since the "
                "previous line, CUDA graphs' pools and the allocator's cache included "
                '(what the process holds on the GPU; not max_memory_allocated)')
        device = getattr(runner.model, 'output_device', None)
        reserved = torch.cuda.max_memory_reserved(device=device)
        torch.cuda.reset_peak_memory_stats(device)
        return int(reserved) // 2**20
