"""The memory a graphed BiFormer-S training pass holds over time, on a machine without a
GPU: what the CUDA graphs' pool must hold at its peak (forward + backward of the
backbone), and which tensors are alive then.

As ``saved_tensors_probe.py``: Triton's launches are skipped (stand-in sm_90 driver),
so the ops allocate what they would on the GPU; torch ops run on the CPU in fp32 and
floating-point tensors are counted at 2 bytes an element (the configs' autocast
activations; fp32 statistics and fp32 gradients count half). Every op's outputs are
tracked from their creation until the last tensor on their memory dies.

    python3 .dev_scripts/memory_timeline_probe.py [H W] [gelu|mlp|none] [cp0123] [amp]
    # default 896 1408 mlp; cpSTAGES: with_cp on those stages (cp0: stage 1 only);
    # amp: under CPU bf16 autocast, tensors counted at their own sizes
"""
import collections
import os
import sys
import weakref

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests'))
import triton_sm90  # noqa: E402

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from triton import knobs  # noqa: E402
from triton.runtime import driver  # noqa: E402


class Tracker(TorchDispatchMode):
    """Live bytes of every op output, by storage; the peak and what was alive then."""

    def __init__(self):
        super().__init__()
        self.live = {}  # storage ptr -> [nbytes, label, set of tensor ids]
        self.now = self.peak = 0
        self.at_peak = []
        self.phase = 'forward'
        self.real_sizes = False

    def _add(self, t, label):
        if not isinstance(t, torch.Tensor) or isinstance(t, torch.nn.Parameter):
            return
        try:
            ptr = t.untyped_storage().data_ptr()
            nbytes = t.untyped_storage().nbytes()
        except (RuntimeError, NotImplementedError):
            return
        if ptr == 0 or nbytes == 0:
            return
        if t.is_floating_point() and not self.real_sizes:
            nbytes = nbytes * 2 // t.element_size()
        entry = self.live.get(ptr)
        if entry is None:
            entry = self.live[ptr] = [nbytes, f'{self.phase}: {label} {tuple(t.shape)}', set()]
            self.now += nbytes
            if self.now > self.peak:
                self.peak = self.now
                self.at_peak = sorted(((b, l) for b, l, _ in self.live.values()), reverse=True)
                self.peak_phase = self.phase
        if id(t) not in entry[2]:
            entry[2].add(id(t))
            weakref.finalize(t, self._drop, ptr, id(t))

    def _drop(self, ptr, tid):
        entry = self.live.get(ptr)
        if entry is None:
            return
        entry[2].discard(tid)
        if not entry[2]:
            self.now -= entry[0]
            del self.live[ptr]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in (out if isinstance(out, (tuple, list)) else (out, )):
            self._add(t, func.overloadpacket.__name__)
        return out


def main():
    args = [int(a) for a in sys.argv[1:] if a.isdigit()] or [896, 1408]
    recompute = ([a for a in sys.argv[1:] if a in ('gelu', 'mlp', 'none')] or ['mlp'])[0]
    recompute = None if recompute == 'none' else recompute
    cp = [[int(c) for c in a[2:]] for a in sys.argv[1:] if a.startswith('cp')]
    cp = cp[0] if cp else False
    H, W = args
    driver.set_active(triton_sm90._Sm90Driver())
    knobs.runtime.jit_cache_hook = lambda **kw: True  # skip every launch
    import mmbiformer.ops.backends.triton as backend
    backend.interpreting = lambda: True
    os.environ.pop('TRITON_INTERPRET', None)
    from mmbiformer.models import BiFormer
    from mmbiformer.ops.backends import captured_step
    model = BiFormer('small', n_win=16, out_indices=(1, 2, 3), norm_eval=True,
                     attn_impl='triton', dwconv_impl='triton',
                     mlp_recompute=recompute, with_cp=cp).train()
    params = [p for p in model.parameters() if p.requires_grad]
    x = torch.randn(2, 3, H, W)
    tracker = Tracker()
    # 'amp': CPU autocast in bf16 (the dtypes autocast gives, counted at their sizes).
    amp = 'amp' in sys.argv[1:]
    tracker.real_sizes = amp
    with captured_step(), tracker, torch.autocast('cpu', dtype=torch.bfloat16, enabled=amp):
        outs = model(x)
        after_forward = tracker.now
        tracker.phase = 'backward'
        grads = torch.autograd.grad(outs, params, [torch.ones_like(o) for o in outs],
                                    allow_unused=True)
        del grads
    del outs
    print(f'BiFormer-S 2x3x{H}x{W}, mlp_recompute={recompute}, with_cp={cp}: after the forward '
          f'{after_forward / 2**30:.2f} GiB alive; peak {tracker.peak / 2**30:.2f} GiB in '
          f'the {tracker.peak_phase} ({"autocast dtypes" if amp else "2-byte floats"}, '
          f'parameters not counted)')
    kinds = collections.Counter()
    for b, label in tracker.at_peak:
        kinds[label.rsplit(' (', 1)[0]] += b
    print('alive at the peak, by creating op:')
    for label, b in kinds.most_common(15):
        print(f'  {label:40s} {b / 2**20:9.1f} MiB')
    print('largest alive at the peak:')
    for b, label in tracker.at_peak[:15]:
        print(f'  {label:60s} {b / 2**20:9.1f} MiB')


if __name__ == '__main__':
    main()
