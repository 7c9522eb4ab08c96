"""How the Triton kernels accumulate: the precision (float32, float64 for float64
inputs: the tests' exact checks) and how many programs write partial sums that are
then added in a fixed order. One definition for every kernel family of this backend."""
import torch

from ...linear import column_sums


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """The torch dtype of accumulators and statistics written to memory."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def acc_tl(dtype: torch.dtype):
    """The same, as the ``tl`` dtype a kernel's ``ACC`` constexpr takes."""
    import triton.language as tl
    return tl.float64 if dtype == torch.float64 else tl.float32


def partial_sum_programs(n_blocks: int, device: torch.device, per_sm: int,
                         c_blocks: int = 1) -> int:
    """Programs for a reduction over ``n_blocks`` blocks whose per-program partial
    sums are added afterwards: a few per multiprocessor (enough to fill the GPU, few
    partial rows to add), shared among ``c_blocks`` channel blocks."""
    if device.type == 'cuda':
        target = per_sm * torch.cuda.get_device_properties(device).multi_processor_count
    else:
        target = 4
    return max(1, min(n_blocks, target // c_blocks))


# How :func:`sum_partials` adds the rows: 'sum' (``ws.sum(0)``, PyTorch's column
# reduction, slow on these few-hundred-row buffers) or 'mv' (a product with a vector of
# ones: cuBLAS's matrix-vector kernel). 'mv' is not timed yet (docs/benchmark_history.md, run 19).
PARTIALS_BY = 'sum'


def sum_partials(ws: torch.Tensor) -> torch.Tensor:
    """The rows of ``ws`` (programs, ...) added up, in a fixed order (deterministic)."""
    if PARTIALS_BY == 'mv' and ws.is_cuda:
        return column_sums(ws.reshape(ws.shape[0], -1)).view(ws.shape[1:])
    return ws.sum(0)
