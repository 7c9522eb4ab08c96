"""Parameters replaced by stand-in leaves on the same memory, for CUDA graph captures."""
import contextlib
from typing import List, Optional

import torch

from ..private_api import module_parameters, set_module_parameter


@contextlib.contextmanager
def stand_ins(module: torch.nn.Module, params: List[torch.Tensor],
              leaves: Optional[List[torch.Tensor]] = None):
    """``params`` replaced, in every submodule of ``module`` that holds them, by new
    leaf tensors on the same memory (yielded in the order of ``params``), or by
    ``leaves[i]`` where given and not None (``half_weights.py``: half-precision copies).

    A parameter's gradient accumulator lives as long as anything refers to it: DDP's
    reducer keeps one per parameter, made on the default stream, and a capture that met
    it would make the default stream wait on the capturing one, which CUDA refuses
    ("operation would make the legacy stream depend on a capturing blocking stream").
    So would an earlier step's loss that a caller keeps (a log, a hook). Stand-ins get
    accumulators of their own; a graph reads and writes the parameters' memory all the
    same."""
    leaves = [leaf if leaf is not None else torch.nn.Parameter(p.detach(), p.requires_grad)
              for p, leaf in zip(params, leaves or [None] * len(params))]
    replacement = {id(p): leaf for p, leaf in zip(params, leaves)}
    swapped = []
    try:
        for sub in module.modules():
            for name, p in module_parameters(sub):
                if p is not None and id(p) in replacement:
                    set_module_parameter(sub, name, replacement[id(p)])
                    swapped.append((sub, name, p))
        yield [replacement[id(p)] for p in params]
    finally:
        for sub, name, p in swapped:
            set_module_parameter(sub, name, p)
