"""Padding and the region layout of NHWC maps, shared by BRA, the other token mixers
and the routing analysis."""
import torch
import torch.nn.functional as F

from .policy import tracing


def pad_to_multiple(x: torch.Tensor, n_win: int) -> torch.Tensor:
    """Zero-pad an NHWC tensor at the bottom/right to multiples of ``n_win``.

    While a graph is recorded the pad is always in it (possibly of zero rows): the
    official ``auto_pad`` decides with a Python ``if`` on the sizes, which a traced or
    exported graph would keep as decided for the example input, wrong at other sizes.
    """
    H, W = x.shape[1:3]
    pad_b = (-H) % n_win
    pad_r = (-W) % n_win
    if pad_b or pad_r or tracing():
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
    return x


def to_regions(x: torch.Tensor, n_win: int) -> torch.Tensor:
    """(N, S*h, S*w, C) -> (N, S*S, h*w, C), regions in row-major order."""
    N, H, W, C = x.shape
    h, w = H // n_win, W // n_win
    x = x.view(N, n_win, h, n_win, w, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(N, n_win * n_win, h * w, C)


def from_regions(x: torch.Tensor, n_win: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`to_regions`."""
    N, _, _, C = x.shape
    x = x.view(N, n_win, n_win, h, w, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(N, n_win * h, n_win * w, C)
