"""Compile every Triton kernel for the GPU architectures BiFormer's users train on, at
the shapes and dtypes the shipped configs train at, on a machine without a GPU, and
print the largest shared memory each kernel asks for per architecture, against that
architecture's per-block limit, as one JSON line.

A kernel whose tiles fit an H100 can fail to launch on an RTX 3090 or a T4, mid-run:
the per-block shared-memory limits differ by more than 3x. Here each launch of
BiFormer-S's training pass (inside ``captured_step()``, the Triton path everywhere; one
block a stage) at classification 224 (bf16), detection 800x1216 and segmentation 512
(fp16) is compiled by Triton's real compiler for each target down to LLVM IR, where its
shared memory is allocated (no launch; a stand-in driver, as ``triton_sm90.py``). sm_80
and sm_89 take sm_86's code generation and have at least its limit, so sm_86 stands for
them.

    python3 tests/triton_arch_limits.py   # the table on stderr, JSON on stdout
    python3 tests/triton_arch_limits.py --registers   # also sm_90 registers and spills

Registers need no check: a thread uses at most 255 (the compiler spills beyond), and the
kernels launch at most 8 warps, 256 x 255 < 65536 registers a block on every
architecture here, so a launch cannot fail on them. One set of launch settings serves
every architecture (no table per compute capability) while this check passes with it.
"""
import json
import os
import sys

os.environ.pop('TRITON_INTERPRET', None)  # before Triton or our kernels are imported

import torch  # noqa: E402
import triton  # noqa: E402
from triton import knobs  # noqa: E402
from triton._C.libtriton import ir  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler.compiler import make_backend  # noqa: E402
from triton.runtime import driver  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from triton_sm90 import OPTIONS, _Sm90Driver  # noqa: E402

# Largest shared memory one block may use (opt-in), bytes: CUDA's tables per compute
# capability. Volta (V100), Turing (T4, RTX 20), Ampere (A100 / RTX 30), Hopper (H100,
# H200). Below sm_80 Triton has no asynchronous copies: the pipelined loops' loads stay
# in registers, so the kernels ask for less shared memory there.
SHARED_LIMITS = {70: 96 * 1024, 75: 64 * 1024, 86: 99 * 1024, 90: 227 * 1024}
# (input N, H, W; n_win; autocast dtype) of the shipped configs' training: classification
# in bf16, detection with --amp in fp16, segmentation in fp16.
SHAPES = {'cls 224': ((1, 224, 224), 7, torch.bfloat16),
          'det 800x1216': ((1, 800, 1216), 16, torch.float16),
          'seg 512': ((1, 512, 512), 8, torch.float16)}


def _shared_bytes(src, options: dict, arch: int) -> int:
    """Compile ``src`` for ``arch`` to LLVM IR (where shared memory is allocated)."""
    target = GPUTarget('cuda', arch, 32)
    backend = make_backend(target)
    parsed = backend.parse_options(options)
    stages = {}
    backend.add_stages(stages, parsed, src.language)
    context = ir.context()
    ir.load_dialects(context)
    backend.load_dialects(context)
    module = src.make_ir(target, parsed, backend.get_codegen_implementation(parsed),
                         backend.get_module_map(), context)
    metadata = {'target': target, **parsed.__dict__}
    for stage in ('ttir', 'ttgir', 'llir'):
        module = stages[stage](module, metadata)
    return metadata['shared']


def _registers(src, options: dict) -> tuple:
    """(registers a thread, bytes spilled) of ``src`` compiled for sm_90 to a cubin,
    from the ptxas Triton ships (``-v``). Spills and a full 255 registers mark a kernel
    that waits on local memory or runs few warps per multiprocessor: what to look at
    first in a kernel far from its floor."""
    import re
    import subprocess
    import tempfile
    kernel = triton.compile(src, target=GPUTarget('cuda', 90, 32), options=options)
    ptxas = os.path.join(os.path.dirname(triton.__file__), 'backends', 'nvidia', 'bin', 'ptxas')
    with tempfile.NamedTemporaryFile('w', suffix='.ptx') as f:
        f.write(kernel.asm['ptx'])
        f.flush()
        log = subprocess.run([ptxas, '-arch=sm_90a', '-v', f.name, '-o', os.devnull],
                             capture_output=True, text=True).stderr
    regs = re.findall(r'Used (\d+) registers', log)
    spills = re.findall(r'(\d+) bytes spill stores', log)
    return int(regs[0]) if regs else -1, int(spills[0]) if spills else -1


def main() -> None:
    """``--registers``: also print (stderr) each launch's registers and spills on sm_90."""
    with_registers = '--registers' in sys.argv[1:]
    shared, errors, seen, registers = {}, {}, set(), []

    def hook(key, repr, fn, compile, is_manual_warmup, already_compiled):
        options = {k: compile[k] for k in OPTIONS}
        # One compile per kernel, argument dtypes, constexprs and launch options: the
        # tiles, which set the shared memory. Launches that differ only in how their
        # integer arguments divide (Triton's specialization of, e.g., a row count)
        # ask for the same tiles; compiling each for four targets made this check
        # a third slower.
        same_tiles = (fn.name, str(sorted(compile['signature'].items())),
                      str(sorted(compile['constants'].items(), key=str)),
                      str(sorted(options.items())))
        if same_tiles in seen:
            return True
        seen.add(same_tiles)
        src = triton.compiler.ASTSource(fn.jit_function, compile['signature'],
                                        compile['constants'], compile['configs'][0])
        if with_registers:
            names = fn.jit_function.arg_names
            tiles = {names[k[0]]: getattr(v, 'name', v) for k, v in compile['constants'].items()
                     if isinstance(k, tuple) and len(k) == 1}
            registers.append((fn.name, options['num_warps'], options['num_stages'],
                              *_registers(src, options), str(tiles)))
        for arch in SHARED_LIMITS:
            try:
                used = _shared_bytes(src, options, arch)
            except Exception as e:  # noqa: BLE001 (reported, the test fails on it)
                errors.setdefault(f'{fn.name} sm_{arch}', str(e)[-1000:])
                continue
            per = shared.setdefault(fn.name, {})
            per[str(arch)] = max(per.get(str(arch), 0), used)
        return True  # compiled only: nothing to launch on a CPU

    driver.set_active(_Sm90Driver())
    knobs.runtime.jit_cache_hook = hook
    import mmbiformer.ops.backends.triton as backend
    import mmbiformer.ops.backends.choose as choose
    backend.interpreting = lambda: True  # let the ops take CPU tensors
    choose._triton_can_take = lambda x: True  # LayerNorm's kernels too
    os.environ.pop('TRITON_INTERPRET', None)
    from mmbiformer.models import BiFormer
    from mmbiformer.models.backbones.biformer import ARCH_SETTINGS
    from mmbiformer.ops.policy import captured_step, runtime_policy
    # One block a stage: the blocks of a stage launch the same kernels at the same
    # shapes, and the CPU's passes at detection size are most of this check's time.
    arch = dict(ARCH_SETTINGS['small'], depths=[1, 1, 1, 1])
    for (N, H, W), n_win, dtype in SHAPES.values():
        model = BiFormer(arch, n_win=n_win, auto_pad=True, attn_impl='triton',
                         dwconv_impl='triton').to(dtype).train()
        # Every Triton path, those still off by default (the fused MLP) included.
        with captured_step(), runtime_policy(gelu_mlp=True):
            outs = model(torch.randn(N, 3, H, W, dtype=dtype))
            sum(o.float().sum() for o in outs).backward()
    # The depthwise convs by rows (launch settings the sweep offers, off by default;
    # their tiles, and so their shared memory, do not depend on the 16-bit dtype).
    from triton_sm90 import _row_dwconv_passes
    _row_dwconv_passes(torch.bfloat16, shape=(1, 56, 56, 64))
    # The table for a reader (stderr), then the JSON line the test reads (stdout).
    print(table(shared), file=sys.stderr)
    if with_registers:
        print('\n| kernel | warps | stages | registers | spilled B | constexprs |\n'
              '|---|---|---|---|---|---|', file=sys.stderr)
        for row in sorted(registers):
            print('| ' + ' | '.join(str(c) for c in row) + ' |', file=sys.stderr)
    print(json.dumps(dict(limits={str(a): v for a, v in SHARED_LIMITS.items()},
                          shared=shared, errors=errors)))


def table(shared: dict) -> str:
    """kernel x architecture: shared memory asked for, of the block limit, fits or not."""
    archs = sorted(SHARED_LIMITS)
    lines = ['| kernel | ' + ' | '.join(f'sm_{a} (limit {SHARED_LIMITS[a]} B)' for a in archs)
             + ' |', '|---|' + '---|' * len(archs)]
    for name, per in sorted(shared.items()):
        cells = [f"{per[str(a)]} B, {'fits' if per[str(a)] <= SHARED_LIMITS[a] else 'TOO BIG'}"
                 if str(a) in per else '-' for a in archs]
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


if __name__ == '__main__':
    main()
