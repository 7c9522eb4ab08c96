"""Multi-head attention helpers shared by every token mixer: PyTorch's fused attention
without the cuDNN backend (``sdpa``), and splitting / merging heads of the region layout."""
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def heads(z: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(N, R, L, m*c) -> (N*R, m, L, c)."""
    N, R, L, _ = z.shape
    return z.reshape(N * R, L, num_heads, -1).transpose(1, 2)


def merge_heads(z: torch.Tensor, N: int, R: int) -> torch.Tensor:
    """(N*R, m, L, c) -> (N, R, L, m*c)."""
    return z.transpose(1, 2).reshape(N, R, z.shape[2], -1)


# cuDNN's attention is left out everywhere: PyTorch picks it on Hopper, and it builds a
# graph on the host for every new shape, forward and backward, which dominated what a
# new input size cost in dense training; once built it was not faster either
# (docs/benchmark_history.md, "Pipeline"). Under torch.compile Inductor also hands it q/k/v
# whose head dim is not contiguous, which it refuses.
SDPA_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                 SDPBackend.MATH]


def sdpa(q, k, v, **kwargs):
    """``F.scaled_dot_product_attention`` without the cuDNN backend (see above)."""
    with sdpa_kernel(SDPA_BACKENDS):
        return F.scaled_dot_product_attention(q, k, v, **kwargs)
