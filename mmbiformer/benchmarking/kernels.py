"""A roofline table of BiFormer's own kernels at the shapes BiFormer-S runs.

For each kernel and shape: its GPU time, the bytes it must read and write, the rate
that makes, and its floor: the same bytes at the copy bandwidth measured in the same
run (a ``torch`` copy of a large buffer). Beside it, where one exists, the library
kernel that does the same work: cuDNN's depthwise conv on the channels-last view,
``F.layer_norm``, SDPA (flash) attention on the same tokens, heads and head size.

    python3 tools/benchmark.py kernels [--workload cls det] [--json PATH]

Workloads: ``cls``, the classification step at 224, batch 128 (``n_win`` 7); ``det``,
the detection trunk at 800x1216, batch 2 (``n_win`` 16, maps padded to multiples of
it). ``per step`` multiplies a row by the blocks that run it. Bytes count each tensor
once (what a kernel with perfect caching must move); a kernel at its floor moves
nothing twice.
"""
import dataclasses
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F

from ..ops.policy import captured_step
from .timing import cuda_profile, mean_ms

# BiFormer-S (the preset's facts): channels, blocks and heads per stage; top-k of
# the routed stages 1-3 (stage 4 attends globally, by other kernels).
DIMS = (64, 128, 256)
DEPTHS = (4, 4, 18)
HEAD_DIM = 32
TOPKS = (1, 4, 16)
LCE_K, POS_K = 5, 3
WORKLOADS = {'cls': dict(batch=128, size=(224, 224), n_win=7),
             'det': dict(batch=2, size=(800, 1216), n_win=16)}


@dataclasses.dataclass
class Stage:
    workload: str
    index: int  # 1-3
    N: int
    H: int  # the padded map BRA runs on
    W: int
    C: int
    blocks: int
    n_win: int
    topk: int

    @property
    def name(self) -> str:
        return f'{self.workload} s{self.index} {self.N}x{self.H}x{self.W}x{self.C}'


def stages(workload: str) -> List[Stage]:
    w = WORKLOADS[workload]
    out = []
    for i, (C, depth, topk) in enumerate(zip(DIMS, DEPTHS, TOPKS)):
        stride = 4 * 2**i
        H, W = (-(-s // stride) for s in w['size'])
        S = w['n_win']
        H, W = -(-H // S) * S, -(-W // S) * S
        out.append(Stage(workload, i + 1, w['batch'], H, W, C, depth, S, topk))
    return out


def all_stages(workloads) -> List[Stage]:
    return [s for w in workloads for s in stages(w)]


@dataclasses.dataclass
class Row:
    kernel: str
    shape: str
    per_step: int  # launches of this row in one step
    us: float
    bytes: int
    floor_us: float
    library: str = ''
    library_us: Optional[float] = None

    @property
    def gbps(self) -> float:
        return self.bytes / self.us / 1e3

    @property
    def of_floor(self) -> float:
        return self.floor_us / self.us


def copy_bandwidth(device, nbytes: int = 1 << 28) -> float:
    """Bytes per microsecond of a device-to-device copy (read + write counted)."""
    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    ms = mean_ms(lambda: dst.copy_(src), 20, device=device)
    return 2 * nbytes / (ms * 1e3)


def _us(fn: Callable, iters: int, device) -> float:
    """Microseconds of GPU time of one call of ``fn``: the summed durations of the
    kernels it launches, as the profiler records them. Not the time between events
    around the calls: launching these kernels from Python takes longer than they run
    (the whole step runs them from a CUDA graph), so events would time the host
    (docs/benchmark_history.md, run 18)."""
    if torch.device(device).type != 'cuda':
        return mean_ms(fn, iters, device=device) * 1e3
    prof = cuda_profile(fn, iters)
    return sum(e.self_device_time_total for e in prof.key_averages()) / iters


def dwconv_rows(stage: Stage, k: int, as_lce: bool, bw: float, iters: int, dev='cuda',
                dtype=torch.bfloat16, config: Optional[dict] = None,
                dw_config: Optional[dict] = None, which=('fwd', 'dx', 'dw'),
                library: bool = True) -> List[Row]:
    """Forward, input gradient and weight gradient (``which``) of the K x K depthwise
    conv, with launch settings ``config`` / ``dw_config`` (None: the kernels'
    defaults). LCE (``as_lce``): V read in place from the qkv projection, the attention
    output added, the input gradient added into dV in place; position embedding: a plain
    NHWC map. ``library``: cuDNN's time beside each row."""
    from ..ops.backends.triton.dwconv import conv_nhwc_into, weight_grad
    N, H, W, C = stage.N, stage.H, stage.W, stage.C
    one = N * H * W * C * dtype.itemsize  # bytes of one map
    if as_lce:
        qkv = torch.randn(N, H, W, 3 * C, device=dev, dtype=dtype)
        x, dx = qkv[..., 2 * C:], torch.randn_like(qkv)[..., 2 * C:]
    else:
        x, dx = (torch.randn(N, H, W, C, device=dev, dtype=dtype) for _ in range(2))
    w = torch.randn(C, 1, k, k, device=dev, dtype=dtype)
    b = torch.randn(C, device=dev, dtype=dtype)
    res = torch.randn(N, H, W, C, device=dev, dtype=dtype) if as_lce else None
    g = torch.randn(N, H, W, C, device=dev, dtype=dtype)
    out = torch.empty(N, H, W, C, device=dev, dtype=dtype)
    name = 'lce' if as_lce else 'pos embed'
    # Forward: x (and the residual) read, out written; input gradient likewise (LCE: dV
    # read, added to, written).
    conv_bytes = one * (3 if as_lce else 2)
    runs = {'fwd': (conv_bytes, lambda: conv_nhwc_into(out, x, w, b, residual=res,
                                                       cfg=config)),
            'dx': (conv_bytes, lambda: conv_nhwc_into(
                dx, g, w, residual=dx if as_lce else None, flip=True, cfg=config)),
            'dw': (2 * one, lambda: weight_grad(x, g, k, cfg=dw_config))}
    # As the captured training step runs them (each call copies the weight to (K*K, C)).
    with captured_step():
        rows = [Row(f'dwconv {k}x{k} {part} ({name})', stage.name, stage.blocks,
                    _us(runs[part][1], iters, dev), runs[part][0], runs[part][0] / bw)
                for part in which]
    if not library:
        return rows
    # cuDNN on the channels-last view (what dwconv_impl='cudnn' runs).
    xc = x.contiguous().permute(0, 3, 1, 2)
    gc = g.permute(0, 3, 1, 2)
    for row, part in zip(rows, which):
        if part == 'fwd':
            row.library, row.library_us = 'cuDNN fwd', _us(
                lambda: F.conv2d(xc, w, b, 1, k // 2, 1, C), iters, dev)
            continue
        mask = [True, False, False] if part == 'dx' else [False, True, True]
        row.library = 'cuDNN bwd ' + ('data' if part == 'dx' else 'weight+bias')
        row.library_us = _us(lambda: torch.ops.aten.convolution_backward(
            gc, xc, w, [C], [1, 1], [k // 2] * 2, [1, 1], False, [0, 0], C, mask),
            iters, dev)
    return rows


def setting_name(cfg: dict) -> str:
    """A launch setting as the sweeps' tables name it: ``KEY=value ...``."""
    return ' '.join(f'{key}={value}' for key, value in cfg.items())


# Launch settings ``sweep_dwconv`` tries (the defaults are in backends/triton/dwconv.py).
# STAGES > 1 pipelines the kernels' run-time loops (loads through shared memory).
FWD_CANDIDATES = ([dict(TH=8, TW=8, BLOCK_C=64, num_warps=nw, UNROLL=0, STAGES=st)
                   for nw in (2, 4) for st in (1, 2, 3, 4)]
                  + [dict(TH=8, TW=8, BLOCK_C=64, num_warps=4, UNROLL=1, STAGES=st)
                     for st in (1, 2)]
                  + [dict(TH=4, TW=8, BLOCK_C=64, num_warps=2, UNROLL=0, STAGES=st)
                     for st in (1, 3)]
                  + [dict(TH=8, TW=16, BLOCK_C=64, num_warps=8, UNROLL=0, STAGES=3)]
                  # Interior tiles without masks (INTERIOR in dwconv_kernels.py).
                  + [dict(TH=th, TW=8, BLOCK_C=64, num_warps=nw, UNROLL=0, STAGES=st,
                          INTERIOR=True)
                     for th in (8, 16) for nw in (2, 4) for st in (1, 2)]
                  # Row-streaming kernels (ROWS): strips of TW columns, RH rows a program,
                  # the tap weights in registers (HOIST) or reloaded each row.
                  + [dict(ROWS=True, RH=rh, TW=tw, BLOCK_C=bc, num_warps=nw, HOIST=ho)
                     for rh in (16, 32) for tw, bc, nw in ((16, 64, 8), (8, 64, 4), (16, 32, 4),
                                                           (16, 64, 16))
                     for ho in (True, False)]
                  # ... and their walk down the rows pipelined (STAGES).
                  + [dict(ROWS=True, RH=16, TW=tw, BLOCK_C=64, num_warps=nw, HOIST=False,
                          STAGES=st)
                     for tw, nw in ((16, 8), (8, 4)) for st in (2, 3)])
DW_CANDIDATES = ([dict(PB=4, BLOCK_C=64, num_warps=4, progs_per_sm=ps, STAGES=st)
                  for ps in (2, 4) for st in (1, 2, 3, 4)]
                 + [dict(PB=8, BLOCK_C=32, num_warps=4, progs_per_sm=4, STAGES=st)
                    for st in (2, 3, 4)]
                 + [dict(PB=16, BLOCK_C=32, num_warps=4, progs_per_sm=ps, STAGES=st)
                    for ps in (2, 4) for st in (2, 3)]
                 + [dict(PB=4, BLOCK_C=64, num_warps=2, progs_per_sm=4, STAGES=1)]
                 + [dict(ROWS=True, RH=rh, TW=tw, BLOCK_C=bc, num_warps=nw, progs_per_sm=ps)
                    for rh in (16, 32) for tw, bc, nw in ((8, 32, 4), (16, 32, 4), (8, 64, 4),
                                                          (8, 32, 8))
                    for ps in (2, 4)]
                 + [dict(ROWS=True, RH=16, TW=8, BLOCK_C=32, num_warps=4, progs_per_sm=4,
                         STAGES=st) for st in (2, 3, 4)])


def sweep_dwconv(workloads=('cls', 'det'), iters: int = 20, dev='cuda',
                 stage_list: Optional[List[Stage]] = None) -> Dict:
    """Time the depthwise-conv kernels under every candidate launch setting at every
    shape: ``{"fwd+dx" | "dw": {setting: {"<workload> s<stage> <k>x<k>": ms per step}}}``."""
    bw = copy_bandwidth(torch.device(dev))
    totals: Dict[str, Dict[str, Dict[str, float]]] = {'fwd+dx': {}, 'dw': {}}
    for stage in stage_list or all_stages(workloads):
        for k, lce in ((LCE_K, True), (POS_K, False)):
            for part, candidates in (('fwd+dx', FWD_CANDIDATES), ('dw', DW_CANDIDATES)):
                for cfg in candidates:
                    name = setting_name(cfg)
                    rows = dwconv_rows(stage, k, lce, bw, iters, dev, library=False,
                                       config=cfg, dw_config=cfg,
                                       which=('fwd', 'dx') if part == 'fwd+dx' else ('dw',))
                    per = totals[part].setdefault(name, {})
                    key = f'{stage.workload} s{stage.index} {k}x{k}'
                    per[key] = per.get(key, 0.) + sum(r.us * r.per_step for r in rows) / 1e3
    return totals


# add + LayerNorm launch settings (module constants of backends/triton/layer_norm.py):
# elements per program (forward and backward alike here), warps, and the backward's
# programs per SM, pipeline stages and deferred dW/dB sums (the last only beside the
# shipped setting).
LN_CANDIDATES = [dict(TILE=t, BWD_TILE=t, NUM_WARPS=w, BWD_PROGRAMS_PER_SM=p,
                      BWD_STAGES=st, BWD_DEFER=False)
                 for t in (2048, 4096, 8192) for w in (4, 8) for p in (4, 8)
                 for st in (1, 2, 3)] + [
    dict(TILE=4096, BWD_TILE=4096, NUM_WARPS=4, BWD_PROGRAMS_PER_SM=4, BWD_STAGES=st,
         BWD_DEFER=True)
    for st in (1, 2)]


def sweep_layer_norm(workloads=('cls', 'det'), iters: int = 20, dev='cuda',
                     stage_list: Optional[List[Stage]] = None) -> Dict:
    """The add + LayerNorm kernels under every candidate setting at every shape, as
    :func:`sweep_dwconv`'s: ``{'fwd' | 'bwd': {setting: {shape: ms per step}}}``."""
    from ..ops.backends.triton import layer_norm
    bw = copy_bandwidth(torch.device(dev))
    totals: Dict[str, Dict[str, Dict[str, float]]] = {'fwd': {}, 'bwd': {}}
    shipped = {key: getattr(layer_norm, key) for key in LN_CANDIDATES[0]}
    try:
        for stage in stage_list or all_stages(workloads):
            for cfg in LN_CANDIDATES:
                for key, value in cfg.items():
                    setattr(layer_norm, key, value)
                name = setting_name(cfg)
                fwd, bwd = layer_norm_rows(stage, bw, iters, dev, library=False)
                for part, row in (('fwd', fwd), ('bwd', bwd)):
                    totals[part].setdefault(name, {})[f'{stage.workload} s{stage.index}'] = (
                        row.us * row.per_step / 1e3)
    finally:
        for key, value in shipped.items():
            setattr(layer_norm, key, value)
    return totals


def format_sweep(totals: Dict) -> str:
    lines = []
    for part, by_cfg in totals.items():
        keys = sorted({k for per in by_cfg.values() for k in per})
        lines += [f'| {part} setting | ' + ' | '.join(keys) + ' | total |',
                  '|---|' + '---|' * (len(keys) + 1)]
        for name, per in sorted(by_cfg.items(), key=lambda kv: sum(kv[1].values())):
            lines.append(f'| {name} | ' + ' | '.join(f'{per[k]:.2f}' for k in keys)
                         + f' | {sum(per.values()):.2f} |')
        lines.append('')
    return '\n'.join(lines)


def layer_norm_rows(stage: Stage, bw: float, iters: int, dev='cuda',
                    dtype=torch.bfloat16, library: bool = True) -> List[Row]:
    """The blocks' fused residual add + LayerNorm, forward and backward (two per
    block), against ``F.layer_norm`` of the sum (the add not counted for it)."""
    from ..ops.backends.triton.layer_norm import add_layer_norm
    N, H, W, C = stage.N, stage.H, stage.W, stage.C
    one = N * H * W * C * dtype.itemsize
    x = torch.randn(N, H, W, C, device=dev, dtype=dtype, requires_grad=True)
    r = torch.randn(N, H, W, C, device=dev, dtype=dtype, requires_grad=True)
    wt = torch.ones(C, device=dev, requires_grad=True)
    bs = torch.zeros(C, device=dev, requires_grad=True)
    g_xo, g_y = torch.randn_like(x), torch.randn_like(x)
    xo, y = add_layer_norm(x, r, wt, bs, 1e-6)

    def bwd():
        torch.autograd.grad((xo, y), (x, r, wt, bs), (g_xo, g_y), retain_graph=True)

    def ref_bwd():
        torch.autograd.grad(yr, (s, wt_l, bs_l), g_y, retain_graph=True)

    with torch.no_grad():
        fwd_us = _us(lambda: add_layer_norm(x, r, wt, bs, 1e-6), iters, dev)
    rows = [Row('add + LayerNorm fwd', stage.name, 2 * stage.blocks, fwd_us, 4 * one,
                4 * one / bw),
            # reads dxo, dy, xo; writes dx (dr is the same tensor without a scale)
            Row('add + LayerNorm bwd', stage.name, 2 * stage.blocks, _us(bwd, iters, dev),
                4 * one, 4 * one / bw)]
    if not library:
        return rows
    s = (x + r).detach().requires_grad_()
    # CUDA's layer_norm wants the weight in the input's dtype (as under autocast).
    wt_l, bs_l = (t.detach().to(dtype).requires_grad_() for t in (wt, bs))
    yr = F.layer_norm(s, (C,), wt_l, bs_l, 1e-6)
    rows[0].library, rows[0].library_us = 'F.layer_norm fwd', _us(
        lambda: F.layer_norm(s.detach(), (C,), wt_l.detach(), bs_l.detach(), 1e-6), iters, dev)
    rows[1].library, rows[1].library_us = 'F.layer_norm bwd', _us(ref_bwd, iters, dev)
    return rows


def attention_rows(stage: Stage, bw: float, iters: int, dev='cuda',
                   dtype=torch.bfloat16) -> List[Row]:
    """BRA's token attention (routed, or dense where the dense kernels apply) forward
    and backward, against SDPA's flash attention: for the routed kernels on the same
    useful work (each region's queries over its top-k regions' tokens, a batch of
    regions), for the dense ones on all tokens against all tokens (their work, the
    routing mask aside)."""
    from ..ops.backends.triton import use_dense
    from ..ops.backends.triton.routed_attention import routed_attention
    from torch.nn.attention import SDPBackend, sdpa_kernel
    N, H, W, C, S, topk = stage.N, stage.H, stage.W, stage.C, stage.n_win, stage.topk
    heads = C // HEAD_DIM
    R, L = S * S, (H // S) * (W // S)
    qkv = torch.randn(N, H, W, 3 * C, device=dev, dtype=dtype, requires_grad=True)
    index = torch.stack([torch.randperm(R, device=dev)[:topk] for _ in range(N * R)]
                        ).view(N, R, topk)
    scale = HEAD_DIM ** -0.5
    out = routed_attention(qkv, index, S, heads, C, scale)
    g = torch.randn_like(out)
    kind = 'dense' if use_dense(H, W, L, topk) else 'routed'
    one = dtype.itemsize
    # Bytes: qkv read, output written (forward); qkv, output, its gradient read and
    # dqkv written (backward).
    fwd_bytes = N * H * W * 4 * C * one
    bwd_bytes = N * H * W * 8 * C * one
    with torch.no_grad():
        fwd = _us(lambda: routed_attention(qkv, index, S, heads, C, scale), iters, dev)
    bwd = _us(lambda: torch.autograd.grad(out, qkv, g, retain_graph=True), iters, dev)
    if kind == 'dense':  # the dense kernels' own work: every token against every token
        q = torch.randn(N, heads, H * W, HEAD_DIM, device=dev, dtype=dtype,
                        requires_grad=True)
        kv = torch.randn_like(q).requires_grad_()
        library = 'SDPA flash, all tokens'
    else:  # each region's queries against its routed regions' tokens
        q = torch.randn(N * R, heads, L, HEAD_DIM, device=dev, dtype=dtype,
                        requires_grad=True)
        kv = torch.randn(N * R, heads, topk * L, HEAD_DIM, device=dev, dtype=dtype,
                         requires_grad=True)
        library = 'SDPA flash, same tokens'
    rows = [Row(f'{kind} attention fwd', stage.name, stage.blocks, fwd, fwd_bytes,
                fwd_bytes / bw),
            Row(f'{kind} attention bwd', stage.name, stage.blocks, bwd, bwd_bytes,
                bwd_bytes / bw)]
    try:
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            with torch.no_grad():
                rows[0].library_us = _us(
                    lambda: F.scaled_dot_product_attention(q, kv, kv), iters, dev)
            o = F.scaled_dot_product_attention(q, kv, kv)
            go = torch.randn_like(o)
            rows[1].library_us = _us(
                lambda: torch.autograd.grad(o, (q, kv), go, retain_graph=True), iters, dev)
        rows[0].library = rows[1].library = library
    except RuntimeError as e:  # flash not available for this dtype/device
        rows[0].library = f'SDPA flash: {str(e)[:40]}'
    return rows


def mlp_rows(stage: Stage, bw: float, iters: int, dev='cuda', dtype=torch.bfloat16,
             library: bool = True) -> List[Row]:
    """The MLP's kernels with GELU inside (``backends/triton/mlp.py``): the second
    layer with GELU on its input (forward), the product of its backward with GELU's
    derivative and GELU's output (``dP``, ``H``), against the same work by PyTorch's ops
    (GELU, then cuBLAS; cuBLAS, then GELU's backward, which reads the kept H)."""
    from ..ops.backends.triton.mlp import gelu_linear, linear_gelu_backward
    T, C = stage.N * stage.H * stage.W, stage.C
    one = T * C * dtype.itemsize
    p = torch.randn(T, 3 * C, device=dev, dtype=dtype)
    g = torch.randn(T, C, device=dev, dtype=dtype)
    w = torch.randn(C, 3 * C, device=dev, dtype=dtype) * (3 * C) ** -0.5
    b = torch.randn(C, device=dev, dtype=dtype)
    with captured_step(), torch.no_grad():
        rows = [Row('mlp fc2 with GELU fwd', stage.name, stage.blocks,
                    _us(lambda: gelu_linear(p, w, b), iters, dev), 4 * one, 4 * one / bw),
                Row('mlp fc2 with GELU bwd (dP, H, fc1 bias grad)', stage.name, stage.blocks,
                    _us(lambda: linear_gelu_backward(g, w, p), iters, dev), 10 * one,
                    10 * one / bw)]
        if library:
            rows[0].library, rows[0].library_us = 'F.gelu + addmm', _us(
                lambda: F.linear(F.gelu(p), w, b), iters, dev)
            ones = torch.ones(T, device=dev, dtype=dtype)
            rows[1].library, rows[1].library_us = 'mm + gelu_backward + mv', _us(
                lambda: torch.mv(torch.ops.aten.gelu_backward(g @ w, p).t(), ones), iters,
                dev)
    return rows


def _mlp_candidates(tiles):
    return [dict(BLOCK_M=m, BLOCK_N=n, BLOCK_K=k, GROUP_M=8, num_warps=nw, num_stages=st)
            for m, n, k, nw, st in tiles]


# (BLOCK_M, BLOCK_N, BLOCK_K, warps, stages): the shipped setting first, then tiles that
# compile without register spills on sm_90 (the backward's epilogue needs the smaller).
MLP_FWD_CANDIDATES = _mlp_candidates([
    (128, 128, 64, 8, 3), (128, 128, 64, 8, 2), (128, 128, 64, 8, 4), (128, 64, 64, 4, 3),
    (64, 128, 64, 4, 3), (64, 64, 64, 4, 3), (128, 256, 64, 8, 3), (256, 64, 64, 8, 3),
    (128, 128, 32, 4, 4)])
MLP_BWD_CANDIDATES = _mlp_candidates([
    (128, 64, 64, 8, 3), (128, 64, 64, 8, 2), (128, 64, 64, 8, 4), (64, 64, 64, 4, 3),
    (64, 64, 64, 4, 2), (64, 128, 64, 8, 3), (128, 64, 32, 8, 3), (128, 32, 64, 4, 3)])


def sweep_mlp(workloads=('cls', 'det'), iters: int = 20, dev='cuda',
              stage_list: Optional[List[Stage]] = None) -> Dict:
    """The MLP kernels under every candidate setting at every shape, as
    :func:`sweep_dwconv`'s: ``{'mlp fwd' | 'mlp bwd': {setting: {shape: ms per step}}}``."""
    from ..ops.backends.triton import mlp
    bw = copy_bandwidth(torch.device(dev))
    totals: Dict[str, Dict[str, Dict[str, float]]] = {'mlp fwd': {}, 'mlp bwd': {}}
    shipped = dict(mlp.FWD_TILES), dict(mlp.BWD_TILES)
    try:
        for stage in stage_list or all_stages(workloads):
            key = f'{stage.workload} s{stage.index}'
            for part, candidates in (('fwd', MLP_FWD_CANDIDATES), ('bwd', MLP_BWD_CANDIDATES)):
                for cfg in candidates:
                    mlp.FWD_TILES, mlp.BWD_TILES = (cfg, shipped[1]) if part == 'fwd' else (
                        shipped[0], cfg)
                    try:
                        row = mlp_rows(stage, bw, iters, dev, library=False)[
                            0 if part == 'fwd' else 1]
                        ms = row.us * row.per_step / 1e3
                    except Exception:  # noqa: BLE001 (e.g. out of shared memory)
                        ms = float('inf')
                    totals['mlp ' + part].setdefault(setting_name(cfg), {})[key] = ms
    finally:
        mlp.FWD_TILES, mlp.BWD_TILES = shipped
    return totals


PARTS = ['dwconv', 'layer_norm', 'attention', 'mlp']


def roofline(workloads=('cls', 'det'), iters: int = 20, parts=PARTS, device='cuda',
             stage_list: Optional[List[Stage]] = None) -> Dict:
    """All rows of the table, with the measured copy bandwidth (``stage_list``: other
    shapes than the workloads')."""
    device = torch.device(device)
    bw = copy_bandwidth(device)
    rows: List[Row] = []
    for stage in stage_list or all_stages(workloads):
        if 'dwconv' in parts:
            rows += dwconv_rows(stage, LCE_K, True, bw, iters, device)
            rows += dwconv_rows(stage, POS_K, False, bw, iters, device)
        if 'layer_norm' in parts:
            rows += layer_norm_rows(stage, bw, iters, device)
        if 'attention' in parts:
            rows += attention_rows(stage, bw, iters, device)
        if 'mlp' in parts:
            rows += mlp_rows(stage, bw, iters, device)
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else device.type
    return dict(device=name, copy_gbps=bw / 1e3,
                rows=[dict(dataclasses.asdict(r), gbps=r.gbps, of_floor=r.of_floor)
                      for r in rows])


def format_table(result: Dict) -> str:
    lines = [f"{result['device']}: copy bandwidth {result['copy_gbps']:.0f} GB/s",
             '| kernel | shape | per step | us | GB/s | floor us | of floor | library | '
             'library us |', '|---|---|---|---|---|---|---|---|---|']
    for r in result['rows']:
        lib_us = '' if r['library_us'] is None else f"{r['library_us']:.1f}"
        lines.append(f"| {r['kernel']} | {r['shape']} | {r['per_step']} | {r['us']:.1f} | "
                     f"{r['gbps']:.0f} | {r['floor_us']:.1f} | {r['of_floor']:.0%} | "
                     f"{r['library']} | {lib_us} |")
    totals: Dict[str, List[float]] = {}
    for r in result['rows']:
        key = f"{r['shape'].split()[0]}: {r['kernel']}"
        t = totals.setdefault(key, [0., 0., 0.])
        t[0] += r['us'] * r['per_step'] / 1e3
        t[1] += r['floor_us'] * r['per_step'] / 1e3
        t[2] += (r['library_us'] or 0.) * r['per_step'] / 1e3
    lines += ['', '| per step, all stages | ms | floor ms | library ms |', '|---|---|---|---|']
    lines += [f'| {k} | {t[0]:.2f} | {t[1]:.2f} | {t[2]:.2f} |' for k, t in totals.items()]
    return '\n'.join(lines)
