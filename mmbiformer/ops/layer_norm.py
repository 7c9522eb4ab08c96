"""LayerNorm of BiFormer's blocks: ``nn.LayerNorm`` (same parameters and keys) with a
fused residual add, run by Triton kernels on CUDA.

A block is ``x = x + conv(x); x = x + attn(norm1(x)); x = x + mlp(norm2(x))``: each
norm reads the residual sum the add just wrote. :meth:`LayerNorm.add_forward` does
the add and the norm in one pass and returns both. On CUDA the kernels of
``backends/triton/layer_norm.py`` run it: PyTorch's LayerNorm kernels are slow on
BiFormer's short rows, and under autocast they return float32, which the next Linear
copies back to bf16 (forward and backward). Elsewhere (CPU, tracing, export,
``torch.compile``, no Triton) the same maths runs as PyTorch ops: the reference.

The kernels take a fixed host cost per call (the Python autograd function and its
backward; several times PyTorch's), so in eager mode they run where the GPU time they
save is larger: maps of at least the runtime policy's
``layer_norm_triton_min_elements``. A step captured in a CUDA graph pays the host cost
once: there they run at every size (:mod:`mmbiformer.ops.policy`).

The norm's output feeds a Linear, which keeps it for its weight gradient, while the
norm keeps its input for its own backward: two maps a norm.
:meth:`LayerNorm.output_recomputed` drops the first: inside it, what autograd would
keep of the output is a note of how to compute it again, from the input the norm keeps,
by the same kernel (the same bits), when a backward asks for it.
"""
import contextlib
from typing import Iterator, Optional, Tuple

import torch
from torch import nn

from ..private_api import saved_tensors_hooks_in_effect
from .backends.choose import layer_norm_runs_triton
from .policy import current_policy


def drop_path_scale(drop_path: nn.Module, x: torch.Tensor) -> Optional[torch.Tensor]:
    """The per-sample factor (N,) by which ``drop_path`` (mmcv's ``DropPath``) would
    multiply a residual branch for batch ``x`` (0 or ``1 / keep``), drawing the same
    random numbers; None when it would leave the branch unchanged."""
    prob = getattr(drop_path, 'drop_prob', 0.)
    if not drop_path.training or not prob:
        return None
    keep = 1 - prob
    return (keep + torch.rand(x.shape[0], dtype=x.dtype, device=x.device)).floor_() / keep


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` over the last dimension, plus :meth:`add_forward`."""

    def _triton(self, x: torch.Tensor) -> bool:
        return (self.elementwise_affine and self.bias is not None
                and len(self.normalized_shape) == 1
                and layer_norm_runs_triton(x, current_policy()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._triton(x):
            from .backends.triton.layer_norm import layer_norm
            return layer_norm(x, self.weight, self.bias, self.eps)
        return super().forward(x)

    def add_forward(self, x: torch.Tensor, r: torch.Tensor,
                    scale: Optional[torch.Tensor] = None
                    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(s, norm(s))`` with ``s = x + r`` (``r`` times ``scale`` (N,) per sample
        when given: a DropPath factor from :func:`drop_path_scale`)."""
        if self._triton(x):
            from .backends.triton.layer_norm import add_layer_norm
            return add_layer_norm(x, r, self.weight, self.bias, self.eps, scale)
        if scale is not None:
            r = r * scale.view(-1, *(1, ) * (r.dim() - 1)).to(r.dtype)
        s = x + r
        return s, super().forward(s)

    @contextlib.contextmanager
    def output_recomputed(self, source: torch.Tensor, output: torch.Tensor
                          ) -> Iterator[None]:
        """Inside the block, ops that keep ``output`` (``self`` applied to ``source``,
        as :meth:`add_forward` or ``forward`` made it; on the Triton kernels) for their
        backward keep a :class:`_NormOutput` instead, and their backward gets
        ``output`` computed again from ``source``. Hooks already in effect (an
        activation checkpoint's, a memory count's) see every other saved tensor as
        before."""
        # The output as the kernel writes it (its own storage, contiguous): a view of it
        # is then the same view of the recomputed tensor.
        whole = (output.is_contiguous() and output.storage_offset() == 0
                 and output.untyped_storage().nbytes() == output.numel() * output.element_size())
        if not (torch.is_grad_enabled() and output.requires_grad and whole
                and self._triton(source)):
            yield
            return
        outer = saved_tensors_hooks_in_effect()
        # The hooks hold these, not ``output``: autograd keeps the hooks with every
        # tensor saved inside, and holding the output there would keep it alive.
        storage, dtype = output.untyped_storage().data_ptr(), output.dtype

        def pack(t):
            if t.untyped_storage().data_ptr() == storage:
                return _NormOutput(self, source, dtype, t)
            return outer[0](t) if outer else t

        def unpack(saved):
            if isinstance(saved, _NormOutput):
                return saved.compute()
            return outer[1](saved) if outer else saved

        with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
            yield


class _NormOutput:
    """What autograd keeps of a norm's output (or a view of it): the norm's parameters,
    its input (which the norm's own backward keeps anyway) and the view's geometry."""

    def __init__(self, norm: LayerNorm, source: torch.Tensor, dtype: torch.dtype,
                 view: torch.Tensor):
        # The tensors the forward read (a captured step may swap stand-ins in).
        self.weight, self.bias, self.eps = norm.weight, norm.bias, norm.eps
        self.source, self.dtype = source, dtype
        self.version = source._version
        self.geometry = (view.shape, view.stride(), view.storage_offset())
        self.value = None

    def compute(self) -> torch.Tensor:
        if self.source._version != self.version:
            raise RuntimeError('a LayerNorm output kept for recomputation: its input was '
                               'modified in place after the forward')
        if self.value is None:
            from .backends.triton.layer_norm import layer_norm
            with torch.no_grad():
                self.value = layer_norm(self.source, self.weight, self.bias, self.eps,
                                        y_dtype=self.dtype)
        return self.value.as_strided(*self.geometry)
