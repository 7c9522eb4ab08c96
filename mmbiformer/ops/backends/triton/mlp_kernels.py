"""Triton kernels of the MLP's GELU folded into the products next to it, so that the
GELU's own passes over the 3x-wide hidden map (forward: read the first layer's output,
write GELU's; backward: read the hidden gradient and the first layer's output, write
the input gradient) are not made:

* ``_gelu_linear_fwd``: ``Y = GELU(P) @ W^T + b``; GELU is applied to each tile of ``P``
  (the first layer's output) as it is loaded for the product.
* ``_linear_gelu_bwd``: ``dP = (dY @ W) * GELU'(P)`` and ``H = GELU(P)`` (the second
  layer's weight gradient needs it); the GELU terms are applied to the product's tile
  in registers, and the tile's column sums of dP (the first layer's bias gradient)
  written beside it.

GELU is the exact (erf) one in float32, as PyTorch's kernels compute it for every
dtype: ``0.5 * x * (1 + erf(x / sqrt(2)))``, the derivative
``cdf(x) + x * exp(-x^2 / 2) / sqrt(2 pi)``. Products accumulate in float32.
All matrices are row-major with unit column stride; rows are addressed by their stride.
"""
import triton
import triton.language as tl

# Globals a kernel reads must be constexpr for Triton's compiler (the interpreter takes
# any Python float).
_SQRT1_2 = tl.constexpr(0.7071067811865476)
_INV_SQRT_2PI = tl.constexpr(0.3989422804014327)


@triton.jit
def _gelu_cdf(x):
    return 0.5 * (1.0 + tl.math.erf(x * _SQRT1_2))


@triton.jit
def _output_tile(M, N, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr):
    """This program's tile of the (M, N) output: its row-tile index, its rows (int64)
    and its columns. Tiles are ordered in groups of GROUP_M row tiles, so that the
    programs running at once share their operands' rows and columns in the L2 cache."""
    pid = tl.program_id(0)
    tiles_n = tl.cdiv(N, BLOCK_N)
    in_group = GROUP_M * tiles_n
    first_m = (pid // in_group) * GROUP_M
    group_m = tl.minimum(tl.cdiv(M, BLOCK_M) - first_m, GROUP_M)
    pid_m = first_m + (pid % in_group) % group_m
    pid_n = (pid % in_group) // group_m
    offs_m = (pid_m * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    return pid_m, offs_m, pid_n * BLOCK_N + tl.arange(0, BLOCK_N)


@triton.jit
def _product(A, B, offs_m, offs_n, mask_m, mask_n, K, sa_m, sb_k, sb_n,
             GELU_A: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
             BLOCK_K: tl.constexpr):
    """``A[offs_m, :] @ B[:, offs_n]`` in float32 (A's rows by stride ``sa_m``, unit
    columns; B's element (k, n) at ``k * sb_k + n * sb_n``), with GELU applied to each
    tile of A as it is loaded where ``GELU_A``."""
    offs_k = tl.arange(0, BLOCK_K)
    acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
    for k in range(0, K, BLOCK_K):
        kk = k + offs_k
        mask_k = kk < K
        a = tl.load(A + offs_m[:, None] * sa_m + kk[None, :],
                    mask=mask_m[:, None] & mask_k[None, :], other=0.)
        if GELU_A:  # GELU(0) = 0: the masked entries stay 0
            a32 = a.to(tl.float32)
            a = (a32 * _gelu_cdf(a32)).to(B.dtype.element_ty)
        b = tl.load(B + kk[:, None] * sb_k + offs_n[None, :] * sb_n,
                    mask=mask_k[:, None] & mask_n[None, :], other=0.)
        acc = tl.dot(a, b, acc)
    return acc


@triton.jit
def _gelu_linear_fwd(P, W, B, Y, M, N, K, sp_m, sw_n, sy_m,
                     HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr,
                     BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr):
    """Grid: (tiles of Y,). P: (M, K), W: (N, K), Y: (M, N)."""
    pid_m, offs_m, offs_n = _output_tile(M, N, BLOCK_M, BLOCK_N, GROUP_M)
    mask_m = offs_m < M
    mask_n = offs_n < N
    acc = _product(P, W, offs_m, offs_n, mask_m, mask_n, K, sp_m, 1, sw_n, True,
                   BLOCK_M, BLOCK_N, BLOCK_K)
    if HAS_BIAS:
        acc += tl.load(B + offs_n, mask=mask_n, other=0.).to(tl.float32)[None, :]
    tl.store(Y + offs_m[:, None] * sy_m + offs_n[None, :], acc.to(Y.dtype.element_ty),
             mask=mask_m[:, None] & mask_n[None, :])


@triton.jit
def _linear_gelu_bwd(G, W, P, DP, H, DB, M, N, K, sg_m, sw_k, sp_m, sdp_m, sh_m,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                     GROUP_M: tl.constexpr):
    """Grid: (tiles of dP,). G: (M, K) the output gradient, W: (K, N) the second
    layer's weight, P: (M, N) the first layer's output; writes dP and H, (M, N), and
    DB (row tiles, N) float32: each tile's column sums of dP (the first layer's bias
    gradient, once the caller adds the rows up), so that no pass reads dP again for it."""
    pid_m, offs_m, offs_n = _output_tile(M, N, BLOCK_M, BLOCK_N, GROUP_M)
    mask_m = offs_m < M
    mask_n = offs_n < N
    acc = _product(G, W, offs_m, offs_n, mask_m, mask_n, K, sg_m, sw_k, 1, False,
                   BLOCK_M, BLOCK_N, BLOCK_K)
    mask = mask_m[:, None] & mask_n[None, :]
    x = tl.load(P + offs_m[:, None] * sp_m + offs_n[None, :], mask=mask,
                other=0.).to(tl.float32)
    cdf = _gelu_cdf(x)
    pdf = tl.exp(-0.5 * x * x) * _INV_SQRT_2PI
    dp = acc * (cdf + x * pdf)  # rows past M: acc and x are 0, so dp is too
    tl.store(DP + offs_m[:, None] * sdp_m + offs_n[None, :], dp.to(DP.dtype.element_ty),
             mask=mask)
    tl.store(DB + pid_m * N + offs_n, tl.sum(dp, 0), mask=mask_n)
    tl.store(H + offs_m[:, None] * sh_m + offs_n[None, :],
             (x * cdf).to(H.dtype.element_ty), mask=mask)
