"""How a backbone's forward runs: eagerly, compiled, or replayed as CUDA graphs.

The backbone is the network: its ``forward`` computes. A :class:`BackboneRuntime`,
attached from outside, decides how each call runs that forward. The model and its
state dict do not depend on it, so the same weights train with graphs and evaluate
eagerly. Configs name it as a hook (:class:`~.backbone_runtime_hook.BackboneRuntimeHook`),
which attaches it to ``model.backbone`` before the run::

    custom_hooks = [dict(type='BackboneRuntimeHook', cuda_graph=dict(size_divisor=128))]

and code attaches one itself: ``BackboneRuntime(cuda_graph=True).attach(backbone)``.

Options:

* ``cuda_graph`` (bool | dict): training on CUDA replays the backbone's forward and
  backward as CUDA graphs, captured once per input size
  (:class:`~mmbiformer.engine.shape_graphs.ShapeGraphs`). A dict may set
  ``size_divisor`` (pad each batch at the bottom and right to multiples of it, as the
  data preprocessors pad, and crop the outputs back, so that batches of many sizes
  share a few graphs; default None: one graph per exact size, for fixed-size crops),
  ``max_graphs`` (default 16; further sizes run eagerly), ``warmup`` (eager passes
  before a capture, default 1) and ``inference_graphs`` (default 0: off): inference
  (no autograd) replayed as forward-only graphs, one per exact input size, for at most
  that many sizes (:class:`~mmbiformer.engine.shape_graphs.InferenceGraphs`). CPU
  inputs, tracing, a capture already under way and SyncBN training across processes
  run eagerly.
* ``compile`` (bool | dict): ``torch.compile`` the forward on CUDA inputs (a dict is
  passed to ``torch.compile``); not with ``cuda_graph``.

What the backward recomputes is the network's own setting, not the runtime's: the
backbone's ``with_cp`` and ``mlp_recompute`` arguments. ``BiFormer(runtime=...)`` of
earlier versions still works, with a warning that says what to write instead.
"""
import copy
import logging
import weakref
from typing import Callable, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.dist import get_world_size
from mmengine.logging import print_log
from torch import nn

from ..errors import ArgumentError
from ..registry import RUNTIMES
from ..ops.policy import tracing
from .shape_graphs import InferenceGraphs, ShapeGraphs, crop_outputs, padded_size

GRAPH_DEFAULTS = dict(size_divisor=None, max_graphs=16, warmup=1, inference_graphs=0)
RUNTIME_KEYS = ('cuda_graph', 'compile')


def _graph_options(cuda_graph) -> Optional[dict]:
    """``cuda_graph`` checked, as a dict of every option (None: off)."""
    if cuda_graph is False or cuda_graph is None:
        return None
    if cuda_graph is True:
        cuda_graph = {}
    if not isinstance(cuda_graph, dict):
        raise ArgumentError(f'cuda_graph must be a bool or a dict with keys '
                            f'{sorted(GRAPH_DEFAULTS)}, got {cuda_graph!r}')
    unknown = sorted(set(cuda_graph) - set(GRAPH_DEFAULTS))
    if unknown:
        raise ArgumentError(f'cuda_graph: unknown keys {unknown}; valid: {sorted(GRAPH_DEFAULTS)}')
    cfg = dict(GRAPH_DEFAULTS, **cuda_graph)
    divisor = cfg['size_divisor']
    if divisor is not None and not (isinstance(divisor, int) and divisor >= 1):
        raise ArgumentError(f'cuda_graph.size_divisor must be a positive int or None, got '
                            f'{divisor!r}')
    for key in ('max_graphs', 'warmup'):
        if not (isinstance(cfg[key], int) and cfg[key] >= 1):
            raise ArgumentError(f'cuda_graph.{key} must be an int >= 1, got {cfg[key]!r}')
    if not (isinstance(cfg['inference_graphs'], int) and cfg['inference_graphs'] >= 0):
        raise ArgumentError(f'cuda_graph.inference_graphs must be an int >= 0, got '
                            f'{cfg["inference_graphs"]!r}')
    return cfg


@RUNTIMES.register_module()
class BackboneRuntime:
    """Runs a backbone's ``forward`` as its options say (module docstring).

    :meth:`attach` puts it between a backbone's calls and its ``forward``. The graphs it
    captures are its state: ``training_graphs`` (:class:`ShapeGraphs`, None until the
    first graphed training call) and ``inference_graphs`` (:class:`InferenceGraphs`).
    A deep copy of the backbone (mmengine's EMA copies the model) gets a runtime of its
    own, with the options and none of the graphs.

    Args:
        cuda_graph (bool | dict): See the module docstring.
        compile (bool | dict): See the module docstring.
    """

    def __init__(self, cuda_graph=False, compile=False):
        self.cuda_graph = _graph_options(cuda_graph)
        if not isinstance(compile, (bool, dict)):
            raise ArgumentError(f'compile must be a bool or a dict of torch.compile '
                                f'arguments, got {compile!r}')
        # A dict, even an empty one (no torch.compile arguments), compiles.
        self.compile = None if compile is False else {} if compile is True else dict(compile)
        if self.compile is not None and self.cuda_graph is not None:
            raise ArgumentError('cuda_graph cannot be combined with compile; choose one')
        self._reset()

    def _reset(self) -> None:
        self._owner: Optional[weakref.ref] = None
        self.training_graphs: Optional[ShapeGraphs] = None
        self.inference_graphs: Optional[InferenceGraphs] = None
        self._compiled: Optional[Callable] = None
        self._blocker_noted = False

    @classmethod
    def build(cls, cfg) -> 'BackboneRuntime':
        """A runtime from a config value: None (eager), a dict of options, or a
        runtime (its options are copied: each backbone holds its own graphs)."""
        if cfg is None:
            return cls()
        if isinstance(cfg, BackboneRuntime):
            return copy.deepcopy(cfg)
        if not isinstance(cfg, dict):
            raise ArgumentError(f'runtime must be a dict with keys {list(RUNTIME_KEYS)}, '
                                f'got {cfg!r}')
        cfg = {k: v for k, v in cfg.items() if k != 'type'}
        unknown = sorted(set(cfg) - set(RUNTIME_KEYS))
        if unknown:
            raise ArgumentError(f'runtime: unknown keys {unknown}; valid: {list(RUNTIME_KEYS)}')
        return cls(**cfg)

    def options(self) -> dict:
        # ``compile=True`` is held as {} (no torch.compile arguments): not False.
        return dict(cuda_graph=self.cuda_graph if self.cuda_graph is not None else False,
                    compile=self.compile if self.compile is not None else False)

    @property
    def eager(self) -> bool:
        return self.cuda_graph is None and self.compile is None

    def __deepcopy__(self, memo):
        return type(self)(**copy.deepcopy(self.options(), memo))

    def __getstate__(self):
        return self.options()

    def __setstate__(self, state):
        self.__init__(**state)

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.options()})'

    def attach(self, module: nn.Module) -> 'BackboneRuntime':
        """Run ``module``'s calls through this runtime from now on (its ``forward``
        then runs as the options say; a runtime attached before is replaced). The
        module must give ``output_sizes(h, w)`` and ``in_channels`` for the graphs, and
        may say ``recomputes_randomly`` (a block its backward recomputes draws random
        numbers, which no graph can hold). Returns the runtime."""
        owner = self._owner() if self._owner is not None else None
        if owner is not None and owner is not module:  # the graphs hold its parameters
            raise ArgumentError('a BackboneRuntime runs one backbone; give each its own '
                                '(BackboneRuntime.build copies the options)')
        missing = [a for a in ('output_sizes', 'in_channels') if not hasattr(module, a)]
        if self.cuda_graph is not None and missing:
            raise ArgumentError(f'cuda_graph replays a backbone that gives output_sizes(h, w) '
                                f'and in_channels (BiFormer does); {type(module).__name__} '
                                f'lacks {missing}: use compile=True, or no runtime')
        if self.cuda_graph is not None and getattr(module, 'recomputes_randomly', False):
            raise ArgumentError('cuda_graph cannot be combined with with_cp on blocks with '
                                'dropout inside (their recomputation reads the RNG state '
                                'on the host); choose one')
        self._owner = weakref.ref(module)
        module.forward = _RuntimeForward(self, module)
        return self

    # -- running ---------------------------------------------------------------------
    def __call__(self, module: nn.Module, x: torch.Tensor) -> tuple:
        """``module``'s own ``forward(x)``, run as the options say (``module`` also
        gives ``output_sizes``, its ``training`` flag and norms)."""
        network = network_forward(module)
        if self.eager:  # nothing to hold
            return network(x)
        if self.cuda_graph is not None and self._trains_graphed(module, x):
            return self._graphed(module, x)
        if self.cuda_graph is not None and self._infers_graphed(module, x):
            return self._inference_graphs_of(module)(x)
        if self.compile is not None and x.is_cuda:
            if self._compiled is None:
                self._compiled = torch.compile(network, **self.compile)
            return self._compiled(x)
        return network(x)

    def _trains_graphed(self, module: nn.Module, x: torch.Tensor) -> bool:
        if not (module.training and x.is_cuda and torch.is_grad_enabled()) or tracing():
            return False
        if torch.cuda.is_current_stream_capturing():  # a whole step's graph holds ours
            return False
        reason = self._blocker(module)
        if reason:
            if not self._blocker_noted:
                print_log(f'{type(module).__name__}: cuda_graph is on but {reason}; '
                          f'the backbone runs eagerly', logger='current',
                          level=logging.WARNING)
                self._blocker_noted = True
            return False
        return True

    def _infers_graphed(self, module: nn.Module, x: torch.Tensor) -> bool:
        return (self.cuda_graph['inference_graphs'] > 0 and not module.training
                and x.is_cuda and not torch.is_grad_enabled() and not tracing()
                and not torch.cuda.is_current_stream_capturing())

    @staticmethod
    def _blocker(module: nn.Module) -> str:
        """Why this training forward cannot be captured ('' where it can)."""
        if get_world_size() > 1 and any(isinstance(m, nn.SyncBatchNorm) and m.training
                           for m in module.modules()):
            return ('SyncBN in training mode communicates across processes, which a '
                    'captured graph cannot (use norm_eval=True or BN)')
        return ''

    def _graphs_of(self, module: nn.Module) -> ShapeGraphs:
        if self.training_graphs is None:
            self.training_graphs = ShapeGraphs(
                module, network_forward(module), max_graphs=self.cuda_graph['max_graphs'],
                warmup=self.cuda_graph['warmup'], name=type(module).__name__)
        return self.training_graphs

    def _inference_graphs_of(self, module: nn.Module) -> InferenceGraphs:
        if self.inference_graphs is None:
            self.inference_graphs = InferenceGraphs(
                network_forward(module), self.cuda_graph['inference_graphs'],
                name=type(module).__name__)
        return self.inference_graphs

    def _padded(self, h: int, w: int) -> Tuple[int, int]:
        divisor = self.cuda_graph['size_divisor']
        return padded_size(h, w, divisor) if divisor else (h, w)

    def _graphed(self, module: nn.Module, x: torch.Tensor) -> tuple:
        graphs = self._graphs_of(module)
        h, w = x.shape[-2:]
        ph, pw = self._padded(h, w)
        if (ph, pw) == (h, w):
            return graphs(x)
        outs = graphs(F.pad(x, (0, pw - w, 0, ph - h)))
        return crop_outputs(outs, module.output_sizes(h, w))

    def capture_ahead(self, module: nn.Module, batch: int, sizes: Sequence[Tuple[int, int]],
                      dtype: Optional[torch.dtype] = None, inference: bool = False) -> int:
        """Capture ``module``'s graphs for batches of ``batch`` images
        (``module.in_channels`` channels) of each (height, width) in ``sizes``, under
        autocast to ``dtype`` (None: fp32), before the run meets them: training graphs
        (sizes padded as training pads them), or with ``inference`` the inference
        graphs (exact sizes; only where ``inference_graphs`` is on; captured in eval
        mode, the module's mode restored). The first epoch or test pass then replays
        instead of capturing, and data-parallel ranks do not wait for one another's
        captures. Sizes beyond the graphs' maximum are left. Returns how many sizes
        were captured now."""
        device = next(module.parameters()).device
        if self.cuda_graph is None or device.type != 'cuda':
            return 0
        if inference:
            if not self.cuda_graph['inference_graphs']:
                return 0
            graphs, shapes = self._inference_graphs_of(module), list(sizes)
            grad = torch.no_grad()
        else:
            if not module.training or self._blocker(module):
                return 0
            graphs, shapes = self._graphs_of(module), [self._padded(h, w) for h, w in sizes]
            grad = torch.enable_grad()
        before, mode = len(graphs.graphs), module.training
        amp = torch.autocast('cuda', dtype=dtype or torch.float16, enabled=dtype is not None)
        try:
            if inference:
                module.eval()
            with amp, grad:
                for h, w in dict.fromkeys(shapes):
                    x = torch.zeros(batch, module.in_channels, h, w, device=device)
                    if graphs.prepare(x, quiet=True) is None:
                        break
        finally:
            if inference:
                module.train(mode)
        return len(graphs.graphs) - before


def network_forward(module: nn.Module) -> Callable:
    """``module``'s own ``forward`` (its class's: the network as written), bound to it,
    past any runtime attached to it."""
    return type(module).forward.__get__(module, type(module))


def runtime_of(module: nn.Module) -> Optional[BackboneRuntime]:
    """The runtime attached to ``module`` (None: its forward runs as written)."""
    forward = vars(module).get('forward')
    return forward.runtime if isinstance(forward, _RuntimeForward) else None


class _RuntimeForward:
    """What :meth:`BackboneRuntime.attach` puts in a module's ``forward``: calls go
    through the runtime. It holds the module weakly (the module holds it); a deep copy
    of the module gets a new runtime, attached to the copy."""

    def __init__(self, runtime: BackboneRuntime, module: nn.Module):
        self.runtime = runtime
        self.module = weakref.ref(module)

    def __call__(self, x: torch.Tensor) -> tuple:
        return self.runtime(self.module(), x)

    def __deepcopy__(self, memo):
        module = self.module()
        # Copied as part of its module (EMA's deepcopy): memo holds the module's copy.
        copied = memo.get(id(module), module)
        return _RuntimeForward(copy.deepcopy(self.runtime, memo), copied)

    def __reduce__(self):  # pickling a module with a runtime (a weak reference cannot)
        return _RuntimeForward, (self.runtime, self.module())
