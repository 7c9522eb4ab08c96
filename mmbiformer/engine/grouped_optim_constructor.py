"""An optimizer wrapper constructor that gives parameters with the same settings one
param group.

mmengine's default constructor makes one param group per parameter as soon as a config
has a ``paramwise_cfg`` (here: no weight decay on norms). PyTorch's multi-tensor
(``foreach``) optimizers batch their kernels within a group only, so with one tensor per
group every step launches a dozen kernels per parameter from Python, and BiFormer-S
has about three times as many parameter tensors as Swin-T (measured steps:
``docs/benchmark_history.md``, "Pipeline"). Merging groups whose settings are equal changes no
update: every parameter keeps its lr, weight decay and momentum terms.
"""
from typing import List

from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS


def merge_param_groups(groups: List[dict]) -> List[dict]:
    """Param groups with equal settings (everything but ``params``) merged, in the
    order of their first appearance; parameters keep their order."""
    merged, index = [], {}
    for group in groups:
        settings = {k: v for k, v in group.items() if k != 'params'}
        key = tuple(sorted((k, repr(v)) for k, v in settings.items()))
        if key not in index:
            index[key] = len(merged)
            merged.append(dict(settings, params=[]))
        merged[index[key]]['params'].extend(group['params'])
    return merged


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class GroupedOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """:class:`DefaultOptimWrapperConstructor` (same ``paramwise_cfg``), then param
    groups of equal settings merged. Use as ``optim_wrapper.constructor``."""

    def add_params(self, params: List[dict], module, prefix: str = '', **kwargs) -> None:
        super().add_params(params, module, prefix=prefix, **kwargs)
        if not prefix:  # the outermost call: every parameter has its group now
            for group in params:  # a key left out means the optimizer's value
                group.setdefault('lr', self.base_lr)
                if self.base_wd is not None:
                    group.setdefault('weight_decay', self.base_wd)
            params[:] = merge_param_groups(params)
