"""Attach a :class:`~.backbone_runtime.BackboneRuntime` to the model's backbone before
the run, from the config: the backbone stays the network, and how it runs is the
engine's (CUDA graphs per input size, or ``torch.compile``)::

    custom_hooks = [dict(type='BackboneRuntimeHook',
                         cuda_graph=dict(size_divisor=128, inference_graphs=64))]

Options as :class:`~.backbone_runtime.BackboneRuntime`'s, checked when the hook is
built (a bad value stops the run before any data is read). Turned off from the
command line with ``--cfg-options custom_hooks.0.cuda_graph=False`` (the hook is the
first of our configs' ``custom_hooks``).
"""
from typing import Optional

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

from ..errors import ArgumentError
from .backbone_runtime import BackboneRuntime, runtime_of


@HOOKS.register_module()
class BackboneRuntimeHook(Hook):
    """Before the run, run ``model.backbone``'s calls through a runtime of these
    options (module docstring). A second run of the same runner (``train`` then
    ``test``) keeps the runtime it has, with its graphs."""

    # Before EMAHook copies the model (the copy then gets a runtime of its own) and
    # before CaptureAheadHook captures through it.
    priority = 'VERY_HIGH'

    def __init__(self, cuda_graph=False, compile=False):
        self.options = BackboneRuntime(cuda_graph=cuda_graph, compile=compile).options()

    def before_run(self, runner) -> None:
        model = getattr(runner.model, 'module', runner.model)  # past DDP
        backbone = getattr(model, 'backbone', None)
        if backbone is None:
            raise ArgumentError(f'BackboneRuntimeHook runs a model\'s backbone, and '
                                f'{type(model).__name__} has none: remove the hook from '
                                f'custom_hooks')
        current = runtime_of(backbone)
        if current is not None and current.options() == self.options:
            return
        if current is not None and not current.eager:
            print_log(f'BackboneRuntimeHook: {type(backbone).__name__}\'s runtime '
                      f'{current.options()} replaced by {self.options}', logger='current')
        BackboneRuntime(**self.options).attach(backbone)


def _runtime_hook(cfg) -> Optional[dict]:
    """The config's ``BackboneRuntimeHook`` entry of ``custom_hooks`` (None: none)."""
    for hook in cfg.get('custom_hooks') or []:
        if hook.get('type') in ('BackboneRuntimeHook', BackboneRuntimeHook):
            return hook
    return None


def configured_runtime(cfg) -> dict:
    """The runtime options a config gives its backbone: its ``BackboneRuntimeHook``'s,
    or those of the deprecated ``model.backbone.runtime`` (eager where it names none)."""
    hook = _runtime_hook(cfg)
    if hook is not None:
        return BackboneRuntimeHook(**{k: v for k, v in hook.items()
                                      if k not in ('type', 'priority')}).options
    backbone = (cfg.get('model') or {}).get('backbone') or {}
    return BackboneRuntime.build(backbone.get('runtime')).options()


def with_inference_graphs(cfg, graphs: int = 64) -> None:
    """Have ``cfg``'s backbone replay its inference as CUDA graphs, one per input size,
    for up to ``graphs`` sizes (``tools/test.py --cuda-graph``): its
    ``BackboneRuntimeHook`` gets ``inference_graphs``, or the config one such hook."""
    hook = _runtime_hook(cfg)
    if hook is None:
        cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + [
            dict(type='BackboneRuntimeHook', cuda_graph=dict(inference_graphs=graphs))]
        return
    if hook.get('compile'):
        raise ArgumentError('--cuda-graph: this config compiles its backbone '
                            '(BackboneRuntimeHook compile=...); choose one')
    graph = hook.get('cuda_graph') or {}
    graph = dict(graph) if isinstance(graph, dict) else {}
    graph['inference_graphs'] = max(graph.get('inference_graphs', 0), graphs)
    hook['cuda_graph'] = graph
