"""Registers, stack (spills) and shared memory of the depthwise-conv and add+LayerNorm
Triton kernels compiled for sm_90 on a machine without a GPU (Triton's compiler and the
cuobjdump it ships), per launch setting; the figures of docs/benchmark_history.md, run 17.

    PYTHONPATH=. python3 .dev_scripts/dwconv_resources.py

Shapes: BiFormer-S's stage-3 LCE (V a channel slice of qkv, 256 channels, 5x5, bf16).
Outside a captured step the forward reads the weight in place; inside, a (K*K, C) copy.
"""
import itertools
import os
import subprocess
import sys
import tempfile

os.environ.pop('TRITON_INTERPRET', None)  # before Triton or our kernels are imported
import torch  # noqa: E402
import triton  # noqa: E402
from triton import knobs  # noqa: E402
from triton.runtime import driver  # noqa: E402

sys.path.insert(0, 'tests')
from triton_sm90 import OPTIONS, TARGET, _Sm90Driver  # noqa: E402

from mmbiformer.ops.backends.triton import dwconv  # noqa: E402
import mmbiformer.ops.backends.triton.layer_norm as ln  # noqa: E402
from mmbiformer.ops.policy import captured_step  # noqa: E402

BIN = os.path.join(os.path.dirname(triton.__file__), 'backends', 'nvidia', 'bin')
last = {}


def hook(key, repr, fn, compile, is_manual_warmup, already_compiled):
    src = triton.compiler.ASTSource(fn.jit_function, compile['signature'],
                                    compile['constants'], compile['configs'][0])
    kernel = triton.compile(src, target=TARGET, options={k: compile[k] for k in OPTIONS})
    with tempfile.NamedTemporaryFile(suffix='.cubin') as f:
        f.write(kernel.asm['cubin'])
        f.flush()
        out = subprocess.run([os.path.join(BIN, 'cuobjdump'), '-res-usage', f.name],
                             capture_output=True, text=True).stdout
    usage = next(line for line in out.splitlines() if 'REG' in line).split()
    last['usage'] = ' '.join(u for u in usage if u.startswith(('REG', 'STACK')))
    last['usage'] += f' shared={kernel.metadata.shared}'
    return True  # compiled only: nothing to launch


driver.set_active(_Sm90Driver())
knobs.runtime.jit_cache_hook = hook
x = torch.randn(2, 14, 14, 3 * 256, dtype=torch.bfloat16)[..., 512:]
g = torch.randn(2, 14, 14, 256, dtype=torch.bfloat16)
w = torch.randn(256, 1, 5, 5, dtype=torch.bfloat16)
out = torch.empty(2, 14, 14, 256, dtype=torch.bfloat16)
for cfg in ([dict(TH=8, TW=8, BLOCK_C=64, num_warps=nw, UNROLL=u) for nw in (2, 4, 8)
             for u in (0, 1, 2)]):
    for captured in (False, True):
        with captured_step() if captured else torch.no_grad():
            dwconv.conv_nhwc_into(out, x, w, None, residual=out, cfg=cfg)
        print('fwd', cfg, 'captured' if captured else 'eager', last['usage'], flush=True)
for pb, bc, nw in itertools.product([2, 4, 8], [32, 64], [2, 4, 8]):
    if pb * bc // nw <= 128:
        dwconv.weight_grad(x, g, 5, dict(PB=pb, BLOCK_C=bc, num_warps=nw, progs_per_sm=4))
        print('dw', dict(PB=pb, BLOCK_C=bc, num_warps=nw), last['usage'], flush=True)
for C, defer in itertools.product((64, 256), (False, True)):
    ln.BWD_DEFER = defer
    a, r = (torch.randn(2, 8, 8, C, dtype=torch.bfloat16, requires_grad=True) for _ in '12')
    wt, bs = torch.ones(C, requires_grad=True), torch.zeros(C, requires_grad=True)
    xo, y = ln.add_layer_norm(a, r, wt, bs, 1e-6)
    try:  # the launch is skipped: what follows the kernel may fail on its empty outputs
        torch.autograd.grad((xo, y), (a, r, wt, bs), (torch.ones_like(xo), torch.ones_like(y)))
    except RuntimeError:
        pass
    print('add_ln_bwd', dict(C=C, DEFER=defer), last['usage'], flush=True)
