"""A module's training forward and backward as CUDA graphs, one pair per input size.

Dense training (detection, segmentation) runs BiFormer on batches of many sizes, so the
whole step cannot be captured once as classification's is
(``captured_train_step.py``), and eager BiFormer is bound by the host: at detection
sizes its forward and backward launch thousands of small kernels, and the host takes
several times the GPU's time to issue them (``docs/benchmark_history.md``, run 8).
:class:`ShapeGraphs` captures the backbone alone, per input size, and replays it inside the eager step (partial-network capture,
as ``torch.cuda.make_graphed_callables``); the neck, heads, losses and optimizer stay
eager. What differs from ``make_graphed_callables``, and why:

* **one memory pool for all sizes.** Each size's pass is replayed forward then
  backward before the next iteration starts, so the activations of every graph can
  share one pool: memory grows with the largest size, not with the number of sizes.
  For the same reason the tensors a graph reads and writes outside its pool (its
  input, a copy of its outputs, its output gradients) share one block of memory
  across sizes (:class:`SharedStatics`), and the gradients of the parameters one set
  of buffers; each backward hands autograd a fresh copy of those (a gradient aliasing
  a graph's buffer would be overwritten by the next replay: wrong sums under gradient
  accumulation). A second forward before the backward of the first (a model that
  calls the module twice in one step) would overwrite the first one's activations:
  it runs eagerly instead, with a warning;
* **one warm-up pass**, not three: the Triton kernels are compiled for every size at
  once (sizes are not specialised), so a new size costs a warm-up, the capture and
  the graph's instantiation. The warm-up allocates from the graphs' pool and the
  capture runs on the warm-up's stream, so the capture reuses the warm-up's memory:
  meeting a new size needs no memory beyond what its graphs keep. And no
  ``torch.cuda.empty_cache()`` per capture (``torch.cuda.graph`` calls one, which
  hands the training's cached memory back to CUDA, to be allocated again);
* running statistics (BatchNorm buffers) are restored after the warm-up and capture
  passes, so they are updated once per iteration as in eager training;
* the captured kernels are those :func:`~mmbiformer.ops.policy.captured_step`
  chooses (least GPU time, as the host's cost is paid once).

Use it only for modules whose forward is capturable: no host synchronisation, no
collective communication (SyncBN in training under several processes), no
activation checkpointing that keeps the RNG state (it reads it on the host; BiFormer's
``with_cp`` keeps none).
"""
import contextlib
import logging
import time
import weakref
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..ops.policy import autocast_dtype, captured_step, current_policy
from .half_weights import HalfWeights, half_weights_for
from ..private_api import foreach_copy_, holding_graph_pool
from .rank_log import log_every_rank
from .stand_ins import stand_ins


@contextlib.contextmanager
def capturing(graph: torch.cuda.CUDAGraph, pool: tuple, stream: torch.cuda.Stream):
    """Capture into ``graph`` on ``stream``, allocating from ``pool``: what
    ``torch.cuda.graph`` does, without its ``torch.cuda.empty_cache()``."""
    torch.cuda.synchronize()
    with torch.cuda.stream(stream):
        # thread_local: the loader's pin-memory thread may call CUDA meanwhile.
        graph.capture_begin(pool=pool, capture_error_mode='thread_local')
        try:
            yield
        finally:
            graph.capture_end()


def capture_autocast():
    """The autocast in effect, without its weight-cast cache: a captured graph must cast
    the weights again at every replay."""
    dtype = autocast_dtype()
    return torch.autocast('cuda', dtype=dtype or torch.float16, enabled=dtype is not None,
                          cache_enabled=False)


@contextlib.contextmanager
def on_side_stream(stream: torch.cuda.Stream):
    """Run the block on ``stream``, ordered after the current stream's work and before
    its later work (the warm-up passes before a capture, as PyTorch asks)."""
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        yield
    torch.cuda.current_stream().wait_stream(stream)


class SharedStatics:
    """One block of device memory that every size's graph carves its static tensors
    from (input, output copies, output gradients). The graphs run one at a time, so
    they may overlap; a size that needs more than the block gets a new, larger block
    (the older graphs keep theirs alive through their views), so the blocks grow with
    the largest size met so far, not with the number of sizes."""

    ALIGN = 512  # bytes; every tensor starts aligned for any dtype and vector access

    def __init__(self):
        self.block: Optional[torch.Tensor] = None

    def carve(self, like: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        """Uninitialised tensors of the shapes, strides and dtypes of ``like``."""
        spans = [-(-t.numel() * t.element_size() // self.ALIGN) * self.ALIGN for t in like]
        if self.block is None or self.block.numel() < sum(spans):
            self.block = torch.empty(sum(spans), dtype=torch.uint8, device=like[0].device)
        out, start = [], 0
        for t, span in zip(like, spans):
            flat = self.block[start:start + t.numel() * t.element_size()].view(t.dtype)
            # empty_like's layout: the template's where it is dense (channels-last
            # outputs stay so), computed on the meta device (no memory).
            out.append(flat.as_strided(t.shape, torch.empty_like(t, device='meta').stride()))
            start += span
        return out


class _Graph:
    """The forward and backward graphs of one input size, and their static tensors."""

    def __init__(self, owner: 'ShapeGraphs'):
        self.owner = owner
        self.x: Optional[torch.Tensor] = None
        self.fwd = torch.cuda.CUDAGraph()
        self.bwd = torch.cuda.CUDAGraph()
        self.outs: Tuple[torch.Tensor, ...] = ()  # copies of the outputs
        self.grad_outs: List[torch.Tensor] = []
        self.used: List[bool] = []  # which parameters receive a gradient


class _Replay(torch.autograd.Function):
    """Replays the forward graph; its backward replays the backward graph."""

    @staticmethod
    def forward(ctx, graph: _Graph, x: torch.Tensor, *params: torch.Tensor):
        graph.x.copy_(x)
        graph.fwd.replay()
        ctx.graph = graph
        return tuple(o.detach() for o in graph.outs)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads: torch.Tensor):
        graph = ctx.graph
        graph.owner.pending = None
        for static, grad in zip(graph.grad_outs, grads):
            static.copy_(grad)
        graph.bwd.replay()
        # One copy of all gradients (a single kernel), handed out as views.
        flat = graph.owner.grad_flat.clone()
        views = graph.owner.views_of(flat)
        return (None, None) + tuple(v if used else None for v, used in zip(views, graph.used))


class ShapeGraphs:
    """Calls ``forward(x)`` (a tuple of tensors out) through CUDA graphs captured per
    input size, for at most ``max_graphs`` sizes (later ones run eagerly).

    Args:
        module (nn.Module): Owns the parameters ``forward`` trains and the buffers it
            updates.
        forward (callable): The eager forward, ``x -> tuple of tensors``.
        max_graphs (int): Sizes captured at most (each holds two CUDA graphs).
        warmup (int): Eager passes before a capture (compiling kernels, workspaces).
        name (str): Names the module in the log lines of captures.
    """

    def __init__(self, module: nn.Module, forward: Callable, max_graphs: int = 16,
                 warmup: int = 1, name: str = 'ShapeGraphs'):
        if max_graphs < 1 or warmup < 1:
            raise ValueError(f'ShapeGraphs: max_graphs and warmup must be >= 1, got '
                             f'{max_graphs} and {warmup}')
        self.module = module
        self.forward = forward
        self.max_graphs = max_graphs
        self.warmup = warmup
        self.graphs: Dict[tuple, _Graph] = {}
        self.pool = None
        self.params: List[nn.Parameter] = []
        self.halves: Dict[torch.dtype, Optional[HalfWeights]] = {}
        self.grad_flat: Optional[torch.Tensor] = None
        self.name = name
        self.full_noted = False
        self.statics = SharedStatics()
        self.side: Optional[torch.cuda.Stream] = None  # warm-ups run on it
        # An output of the last replay whose backward has not run yet (weak: outputs
        # dropped without a backward, as when an exception ends a step, release it).
        self.pending: Optional[weakref.ref] = None
        self.nested_noted = False

    def key(self, x: torch.Tensor) -> tuple:
        return (tuple(x.shape), x.dtype, x.device, autocast_dtype(),
                tuple(p.requires_grad for p in self.module.parameters()))

    def __call__(self, x: torch.Tensor) -> tuple:
        if self.pending is not None and self.pending() is not None:
            # The last replay's activations, in the shared pool, still wait for its
            # backward: a replay now would overwrite them.
            if not self.nested_noted:
                self.nested_noted = True
                log_every_rank(f'{self.name}: called again before the backward of its '
                               f'previous call; such calls run eagerly (the graphs of all '
                               f'sizes share one memory pool)', level=logging.WARNING)
            return self.forward(x)
        graph = self.prepare(x)
        if graph is None:
            return self.forward(x)
        outs = _Replay.apply(graph, x, *self.params)
        self.pending = weakref.ref(outs[0])
        return outs

    def prepare(self, x: torch.Tensor, quiet: bool = False) -> Optional[_Graph]:
        """The graphs of ``x``'s size (shape, dtype, autocast), captured now if new;
        None once ``max_graphs`` sizes are held (that size runs eagerly). Nothing is
        replayed: :class:`~.backbone_runtime.BackboneRuntime` captures sizes ahead of
        training with it. ``quiet``: no log line per capture."""
        key = self.key(x)
        graph = self.graphs.get(key)
        if graph is not None:
            return graph
        if len(self.graphs) >= self.max_graphs:
            if not self.full_noted:
                self.full_noted = True
                log_every_rank(f'{self.name}: {self.max_graphs} input sizes captured '
                               f'(max_graphs); further sizes run eagerly',
                               level=logging.WARNING)
            return None
        start = time.perf_counter()
        graph = self.graphs[key] = self._capture(x)
        if not quiet:
            held = graph_pools()[0]
            log_every_rank(f'{self.name}: captured forward and backward for input '
                           f'{tuple(x.shape)} in {time.perf_counter() - start:.2f} s '
                           f'(size {len(self.graphs)} of at most {self.max_graphs}; the '
                           f'graphs\' memory pools hold {held / 2**30:.2f} GiB)')
        return graph

    # -- capture -------------------------------------------------------------------
    def views_of(self, flat: torch.Tensor) -> List[torch.Tensor]:
        views, start = [], 0
        for p in self.params:
            views.append(flat[start:start + p.numel()].view_as(p))
            start += p.numel()
        return views

    def _gradient_buffers(self) -> List[torch.Tensor]:
        params = [p for p in self.module.parameters() if p.requires_grad]
        dtypes = {p.dtype for p in params}
        if len(dtypes) > 1:
            raise ValueError(f'ShapeGraphs: parameters of one dtype only, got {dtypes}')
        if [id(p) for p in params] != [id(p) for p in self.params] or self.grad_flat is None:
            # Other trainable parameters (stages frozen or unfrozen): the graphs captured
            # so far copy their gradients into the old buffers, so they go too, and
            # with them their pool (one nothing holds cannot be captured into again).
            self.graphs.clear()
            self.halves.clear()
            self.side = self.pool = None
            self.params = params
            self.grad_flat = torch.zeros(sum(p.numel() for p in params),
                                         dtype=params[0].dtype, device=params[0].device)
        return self.views_of(self.grad_flat)

    def _half_weights(self, x: torch.Tensor) -> Optional[HalfWeights]:
        """The module's weights autocast casts once, cast together each pass
        (``half_weights.py``), for this autocast dtype; found once per dtype and set of
        trained parameters."""
        dtype = autocast_dtype()
        if not current_policy().half_weight_copies or dtype is None:
            return None
        if dtype not in self.halves:
            with captured_step(), capture_autocast():
                self.halves[dtype] = half_weights_for(self.module,
                                                      lambda: self.forward(x), dtype)
        return self.halves[dtype]

    def _pass(self, x: torch.Tensor, params: List[torch.Tensor],
              half: Optional[HalfWeights] = None):
        if half is not None:
            half.cast()
        outs = tuple(self.forward(x))
        grads = torch.autograd.grad(
            [o for o in outs if o.requires_grad], params,
            [torch.ones_like(o) for o in outs if o.requires_grad], allow_unused=True)
        return outs, grads

    def _capture(self, x: torch.Tensor) -> _Graph:
        graph = _Graph(self)
        buffers = self._gradient_buffers()
        saved = [b.detach().clone() for b in self.module.buffers()]
        if self.side is None:  # one stream and one pool serve every size
            self.side, self.pool = torch.cuda.Stream(), torch.cuda.graph_pool_handle()
        half = self._half_weights(x)
        leaves = half.leaves(self.params) if half is not None else None
        with captured_step(), capture_autocast(), \
                stand_ins(self.module, self.params, leaves) as params, \
                holding_graph_pool(self.pool, x.device) as end_warm_up:
            # The warm-up allocates from the pool on the capture's stream (a freed
            # block serves its own stream only), so the capture reuses its memory.
            with on_side_stream(self.side):
                for _ in range(self.warmup):
                    outs, _ = self._pass(x, params, half)
            end_warm_up()
            if not all(o.requires_grad for o in outs):
                raise ValueError('ShapeGraphs: every output must depend on the parameters')
            # Outside the pool: the statics outlive every graph's activations.
            graph.x, *statics = self.statics.carve([x] + list(outs) + list(outs))
            graph.x.copy_(x)
            graph.outs, graph.grad_outs = tuple(statics[:len(outs)]), statics[len(outs):]
            del outs
            with capturing(graph.fwd, self.pool, self.side):
                if half is not None:
                    half.cast()
                outs = tuple(self.forward(graph.x))
                # Copied out of the pool, so that the pool's memory of this size is free
                # for the other sizes' graphs once both graphs are captured.
                foreach_copy_(graph.outs, [o.detach() for o in outs])
            with capturing(graph.bwd, self.pool, self.side):
                grads = torch.autograd.grad(outs, params, graph.grad_outs,
                                            allow_unused=True)
                graph.used = [g is not None for g in grads]
                # Half-precision gradients (half_weights.py) are cast on the way.
                foreach_copy_([b for b, g in zip(buffers, grads) if g is not None],
                              [g for g in grads if g is not None])
            # The replays need the graphs, not the autograd graph of the capture: holding
            # it kept the capture stream's AccumulateGrad nodes alive, and every later
            # backward then synchronised the streams (PyTorch warns of it).
            del grads, outs
        for b, s in zip(self.module.buffers(), saved):
            b.copy_(s)
        return graph


class InferenceGraphs:
    """Calls ``forward(x)`` (a tuple of tensors out; run without autograd) through a
    forward-only CUDA graph per exact input size, for inference: every image size of a
    test set (COCO's, ADE20K's) is its own graph, so that the host launches one graph
    instead of each kernel of the eager forward. No padding: outputs are the eager
    forward's, up to the kernels :func:`~mmbiformer.ops.policy.captured_step`
    chooses (least GPU time).

    A size is captured the second time it is met (its first call runs eagerly, so a
    size met once costs no capture), or ahead (:meth:`prepare`), at most
    ``max_graphs`` sizes (later ones run eagerly). The graphs run one at a time, so they
    share one memory pool and one block for their static input and outputs
    (:class:`SharedStatics`); callers get copies of the outputs (the next replay
    overwrites the statics).
    """

    def __init__(self, forward: Callable, max_graphs: int = 64, name: str = 'InferenceGraphs'):
        self.forward = forward
        self.max_graphs = max_graphs
        self.name = name
        self.graphs: Dict[tuple, Tuple[torch.cuda.CUDAGraph, torch.Tensor, tuple]] = {}
        self.seen: Dict[tuple, int] = {}
        self.pool = None
        self.side: Optional[torch.cuda.Stream] = None
        self.statics = SharedStatics()
        self.capture_s = 0.0

    @staticmethod
    def key(x: torch.Tensor) -> tuple:
        return (tuple(x.shape), x.dtype, x.device, autocast_dtype())

    def __call__(self, x: torch.Tensor) -> tuple:
        key = self.key(x)
        entry = self.graphs.get(key)
        if entry is None:
            self.seen[key] = self.seen.get(key, 0) + 1
            entry = self.prepare(x) if self.seen[key] >= 2 else None
            if entry is None:
                return tuple(self.forward(x))
        graph, static_x, outs = entry
        static_x.copy_(x)
        graph.replay()
        return tuple(o.clone() for o in outs)

    def prepare(self, x: torch.Tensor, quiet: bool = False):
        """The graph of ``x``'s size, captured now if new (None once ``max_graphs``
        sizes are held); nothing is replayed. ``quiet``: no log line."""
        key = self.key(x)
        if key in self.graphs:
            return self.graphs[key]
        if len(self.graphs) >= self.max_graphs:
            return None
        start = time.perf_counter()
        entry = self.graphs[key] = self._capture(x)
        self.capture_s += time.perf_counter() - start
        if not quiet and len(self.graphs) in (1, self.max_graphs):
            log_every_rank(f'{self.name}: inference graph {len(self.graphs)} of at most '
                           f'{self.max_graphs} captured (input {tuple(x.shape)}; '
                           f'{self.capture_s:.2f} s in captures so far)')
        return entry

    def _capture(self, x: torch.Tensor):
        if self.side is None:  # one stream and one pool serve every size
            self.side, self.pool = torch.cuda.Stream(), torch.cuda.graph_pool_handle()
        with captured_step(), capture_autocast(), torch.no_grad(), \
                holding_graph_pool(self.pool, x.device) as end_warm_up:
            # Kernels compiled and workspaces made, in the pool, as ShapeGraphs does.
            with on_side_stream(self.side):
                outs = tuple(self.forward(x))
            end_warm_up()
            static_x, *static_outs = self.statics.carve([x] + list(outs))
            static_x.copy_(x)
            del outs
            graph = torch.cuda.CUDAGraph()
            with capturing(graph, self.pool, self.side):
                outs = tuple(self.forward(static_x))
                # Out of the pool, which is then free for the other sizes' graphs.
                foreach_copy_(static_outs, list(outs))
            del outs
        return graph, static_x, tuple(static_outs)


def crop_outputs(outs: Sequence[torch.Tensor], sizes: Sequence[Tuple[int, int]]) -> tuple:
    """Each NCHW output cut to its (height, width) in ``sizes`` (views)."""
    return tuple(o[..., :h, :w] for o, (h, w) in zip(outs, sizes))


def padded_size(h: int, w: int, divisor: int) -> Tuple[int, int]:
    """``(h, w)`` rounded up to multiples of ``divisor``."""
    return -(-h // divisor) * divisor, -(-w // divisor) * divisor


def graph_pools() -> Tuple[int, int]:
    """(bytes held, bytes not allocated) of the CUDA graphs' private memory pools."""
    held = spare = 0
    for segment in torch.cuda.memory_snapshot():
        if tuple(segment.get('segment_pool_id', (0, 0))) != (0, 0):
            held += segment['total_size']
            spare += segment['total_size'] - segment['allocated_size']
    return held, spare


def graph_pool_spare() -> int:
    """Bytes that CUDA graphs' private memory pools hold but that count as free: a
    replayed graph's activations live there, and the allocator's peak statistics, which
    see only allocations (made at capture time), leave them out. Benchmarks add them
    to the peak of a pass after the captures so that graphed and eager models compare."""
    return graph_pools()[1]
