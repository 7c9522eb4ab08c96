"""mmengine's exponential moving average with one multi-tensor kernel per update.

``ExponentialMovingAverage.update_parameters`` loops over the parameters in Python:
BiFormer-S has 498 parameter tensors, so the EMA of the classification recipe launched
about 500 ``lerp_`` kernels after every step, several milliseconds of host time while
the GPU waited. ``torch._foreach_lerp_`` does the same update (the same ``lerp``
formula, bit for bit) in a few launches (``private_api.foreach_lerp_``). Checkpoints
are unchanged (same module, same keys). Use as ``dict(type='EMAHook', ema_type='ForeachExponentialMovingAverage', ...)``.
"""
import torch
from mmengine.model import ExponentialMovingAverage
from mmengine.registry import MODELS

from ..private_api import foreach_copy_, foreach_lerp_


@MODELS.register_module()
class ForeachExponentialMovingAverage(ExponentialMovingAverage):
    """:class:`mmengine.model.ExponentialMovingAverage`, updated with multi-tensor
    kernels (same arguments, same results)."""

    def update_parameters(self, model: torch.nn.Module) -> None:
        source = (model.state_dict() if self.update_buffers
                  else dict(model.named_parameters()))
        pairs = [(avg.data, source[k].data.to(avg.device))
                 for k, avg in self.avg_parameters.items()]
        if self.steps == 0:
            for avg, src in pairs:
                avg.copy_(src)
        elif self.steps % self.interval == 0:
            floats = [(a, s) for a, s in pairs if a.dtype.is_floating_point]
            if floats:
                avgs, srcs = map(list, zip(*floats))
                foreach_lerp_(avgs, srcs, self.momentum)
        if not self.update_buffers:  # buffers follow the source model
            pairs = [(b.data, s.data.to(b.device))
                     for b, s in zip(self.module.buffers(), model.buffers())]
            if pairs:
                foreach_copy_(*zip(*pairs))
        self.steps += 1
