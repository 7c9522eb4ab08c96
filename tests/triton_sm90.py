"""Compile every Triton kernel of the project for an H100/H200 (sm_90) on a machine
without a GPU, and print what compiled and what failed as one JSON line.

Triton's interpreter, which runs the kernels' numerics on CPU machines, executes a
kernel as Python: it does not type the kernel, so a kernel that Triton's compiler
rejects passes every CPU test (the dense forward kernel did: one name bound to an int
and then to a float tile in a loop). Here Triton's real compiler runs instead, on the
kernels the tiny model's training pass launches: a stand-in driver names sm_90 as the
target, and Triton's compile hook compiles each launch (to Triton IR by default, which
is where typing fails; ``--full`` goes on to a cubin) and then skips the launch.

    python3 tests/triton_sm90.py [--full]

Run as its own process (``tests/test_triton_compile.py``): the suite's process has the
interpreter on, and Triton chooses interpreter or compiler once per kernel, at import.
"""
import json
import os
import sys

os.environ.pop('TRITON_INTERPRET', None)  # before Triton or our kernels are imported

import torch  # noqa: E402
import triton  # noqa: E402
from triton import knobs  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler.compiler import make_backend  # noqa: E402
from triton.runtime import driver  # noqa: E402

TARGET = GPUTarget('cuda', 90, 32)
OPTIONS = ('num_warps', 'num_ctas', 'num_stages', 'enable_fp_fusion')


class _Sm90Driver:
    """What Triton's launcher asks of a driver before it compiles."""

    def get_current_device(self):
        return 0

    def get_current_stream(self, device=None):
        return 0

    def get_current_target(self):
        return TARGET


def _compile(src, options: dict, full: bool) -> None:
    if full:
        triton.compile(src, target=TARGET, options=options)
        return
    from triton._C.libtriton import ir
    backend = make_backend(TARGET)
    parsed = backend.parse_options(options)
    context = ir.context()
    ir.load_dialects(context)
    backend.load_dialects(context)
    src.make_ir(TARGET, parsed, backend.get_codegen_implementation(parsed),
                backend.get_module_map(), context)


def _training_passes() -> None:
    """Forward and backward of every Triton op: the tiny BiFormer inside
    ``captured_step()`` (routed and dense BRA, depthwise convs), in fp32 and bf16, the
    routing's kernels, the fused add + LayerNorm and the MLP."""
    import mmbiformer.ops.backends.triton as backend
    backend.interpreting = lambda: True  # let the ops take CPU tensors
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from helpers import TINY_ARCH
    os.environ.pop('TRITON_INTERPRET', None)  # conftest sets it on machines without CUDA
    from mmbiformer.models import BiFormer
    from mmbiformer.ops.policy import captured_step
    from mmbiformer.ops.backends.triton.layer_norm import add_layer_norm, layer_norm
    from mmbiformer.ops.backends.triton.mlp import gelu_mlp
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(0)
        # 64x64, n_win 2: routed kernels at stages 1-2, dense ones at stage 3.
        model = BiFormer(TINY_ARCH, n_win=2, attn_impl='triton',
                         dwconv_impl='triton').to(dtype).train()
        with captured_step():
            outs = model(torch.randn(2, 3, 64, 64, dtype=dtype))
            sum(o.float().sum() for o in outs).backward()
        # The routing's kernels (on CUDA only inside captured steps; here called).
        from mmbiformer.ops.backends.triton import routing
        q_r, _ = routing.region_means(torch.randn(2, 8, 12, 64, dtype=dtype), 4, 16)
        routing.top_regions(torch.randn(2, 16, 16, dtype=dtype), 4)
        x, r = (torch.randn(2, 4, 4, 32, dtype=dtype, requires_grad=True) for _ in range(2))
        w, b = torch.ones(32, requires_grad=True), torch.zeros(32, requires_grad=True)
        s, y = add_layer_norm(x, r, w, b, 1e-6, None)
        (s.float().sum() + y.float().sum() + layer_norm(x, w, b, 1e-6).float().sum()).backward()
        # The depthwise convs by rows (ROWS launch settings, off by default; the sweep's).
        _row_dwconv_passes(dtype)
        if dtype != torch.float32:  # the MLP's kernels compute in half precision only
            params = [torch.randn(*s, requires_grad=True) for s in ((96, 32), (96, ), (32, 96),
                                                                    (32, ))]
            gelu_mlp(x, *params).float().sum().backward()


def _row_dwconv_passes(dtype: torch.dtype, shape=(2, 9, 11, 64)) -> None:
    """Forward and backward of the depthwise conv by the row-streaming kernels, with
    and without the weights held in registers, pipelined or not, 3x3 and 5x5 (``ROWS``
    settings)."""
    from mmbiformer.ops.backends.triton import dwconv
    shipped = dwconv.CONFIG, dwconv.DW_CONFIG
    try:
        for hoist, stages in ((True, 1), (False, 3)):
            dwconv.CONFIG = dict(ROWS=True, RH=16, TW=16, BLOCK_C=64, num_warps=8, HOIST=hoist,
                                 STAGES=stages)
            dwconv.DW_CONFIG = dict(ROWS=True, RH=16, TW=8, BLOCK_C=32, num_warps=4,
                                    progs_per_sm=4, STAGES=stages + 1)
            for k in (3, 5):
                x = torch.randn(*shape, dtype=dtype, requires_grad=True)
                w = torch.randn(shape[-1], 1, k, k, dtype=dtype, requires_grad=True)
                dwconv.dwconv_nhwc(x, w, None, x, False).float().sum().backward()
    finally:
        dwconv.CONFIG, dwconv.DW_CONFIG = shipped


def main() -> None:
    full = '--full' in sys.argv[1:]
    compiled, errors = set(), {}

    def hook(key, repr, fn, compile, is_manual_warmup, already_compiled):
        src = triton.compiler.ASTSource(fn.jit_function, compile['signature'],
                                        compile['constants'], compile['configs'][0])
        try:
            _compile(src, {k: compile[k] for k in OPTIONS}, full)
            compiled.add(fn.name)
        except Exception as e:  # noqa: BLE001 (reported, the test fails on it)
            errors.setdefault(fn.name, str(e)[-2000:])
        return True  # compiled only: nothing to launch on a CPU

    driver.set_active(_Sm90Driver())
    knobs.runtime.jit_cache_hook = hook
    _training_passes()
    print(json.dumps(dict(target=f'{TARGET.backend} sm_{TARGET.arch}', full=full,
                          compiled=sorted(compiled), errors=errors)))


if __name__ == '__main__':
    main()
