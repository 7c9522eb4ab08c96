"""The precision the Triton kernels accumulate in: float32, float64 for float64 inputs
(the tests' exact checks). One definition for every kernel family of this backend."""
import torch


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """The torch dtype of accumulators and statistics written to memory."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def acc_tl(dtype: torch.dtype):
    """The same, as the ``tl`` dtype a kernel's ``ACC`` constexpr takes."""
    import triton.language as tl
    return tl.float64 if dtype == torch.float64 else tl.float32
