"""What BiFormer-S's training forward keeps for the backward pass, per module type, at
a detection size, with the kernels the captured (graphed) pass takes -- measured on a
machine without a GPU: Triton's compiler hook skips every launch (``tests/triton_sm90.py``'s
stand-in driver), so the ops allocate and save exactly what they would on the GPU,
while the torch ops around them run on the CPU in fp32 (sizes are reported as bf16,
the dtype of the configs' autocast activations; fp32 statistics such as LSE count half).

    python3 .dev_scripts/saved_tensors_probe.py [H W] [gelu|mlp]   # default 896 1280 (800x1216 padded to 128)
"""
import collections
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests'))
import triton_sm90  # noqa: E402  (sets up nothing until asked)

import torch  # noqa: E402
from triton import knobs  # noqa: E402
from triton.runtime import driver  # noqa: E402


def main():
    args = [int(a) for a in sys.argv[1:] if a.isdigit()] or [896, 1280]
    recompute = ([a for a in sys.argv[1:] if a in ('gelu', 'mlp')] or [None])[0]
    H, W = args
    driver.set_active(triton_sm90._Sm90Driver())
    knobs.runtime.jit_cache_hook = lambda **kw: True  # skip every launch
    import mmbiformer.ops.backends.triton as backend
    backend.interpreting = lambda: True
    os.environ.pop('TRITON_INTERPRET', None)
    from mmbiformer.models import BiFormer
    from mmbiformer.ops.backends import captured_step
    model = BiFormer('small', n_win=16, out_indices=(0, 1, 2, 3), norm_eval=True,
                     attn_impl='triton', dwconv_impl='triton',
                     mlp_recompute=recompute).train()
    where = ['?']
    for name, m in model.named_modules():
        kind = type(m).__name__
        m.register_forward_pre_hook(lambda mod, inp, k=kind: where.append(k))
        m.register_forward_hook(lambda mod, inp, out: where.pop() and None)
    seen, per_kind, per_shape = set(), collections.Counter(), collections.Counter()

    def pack(t):
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if key not in seen and not isinstance(t, torch.nn.Parameter) and t.numel() > 1:
            seen.add(key)
            nbytes = t.numel() * (2 if t.is_floating_point() else t.element_size())
            per_kind[where[-1]] += nbytes
            per_shape[(where[-1], tuple(t.shape), str(t.dtype))] += nbytes
        return t

    with captured_step(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        outs = model(torch.randn(2, 3, H, W))
    total = sum(per_kind.values())
    print(f'BiFormer-S, 2x3x{H}x{W}, mlp_recompute={recompute}, saved for backward: {total / 2**30:.2f} GiB (bf16 sizes)')
    for kind, b in per_kind.most_common():
        print(f'  {kind:28s} {b / 2**20:9.1f} MiB  {100 * b / total:5.1f}%')
    print('largest saved tensors (module, shape, dtype: MiB summed over blocks):')
    for (kind, shape, dtype), b in per_shape.most_common(15):
        print(f'  {kind:22s} {str(shape):28s} {dtype:15s} {b / 2**20:8.1f}')
    del outs


if __name__ == '__main__':
    main()
