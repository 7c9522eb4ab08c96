"""BiFormer backbone for mmpretrain, mmdet and mmsegmentation.

Module names follow the official BiFormer code, so official ImageNet checkpoints load
with their key names as published (``downsample_layers.*``, ``stages.*``, ``norm.*``).
"""
import contextlib
import copy
import warnings
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_
from torch.nn.modules.batchnorm import _BatchNorm

from ...errors import ArgumentError
from ...ops.backends.choose import norm_output_recomputes
from ...ops.policy import current_policy, forward_only, tracing
from ...ops.layer_norm import LayerNorm, drop_path_scale
from ...ops.global_attention import GlobalAttentionLePE  # noqa: F401 (old import path)
from ...ops.dwconv import DepthwiseConv2d, GemmConv2d
from ...ops.dwconv import set_impl as set_dwconv_impl
from ...ops.mlp import Mlp
from ...ops.mixers import build_token_mixer, check_attn_cfg, resolve_attn_types
from ...registry import MODELS, RUNTIMES

# Architecture presets (official facts). ``topks`` of -2: global attention with LePE.
ARCH_SETTINGS: Dict[str, dict] = {
    'tiny': dict(depths=[2, 2, 8, 2], embed_dims=[64, 128, 256, 512],
                 topks=[1, 4, 16, -2], head_dim=32, mlp_ratio=3),
    'small': dict(depths=[4, 4, 18, 4], embed_dims=[64, 128, 256, 512],
                  topks=[1, 4, 16, -2], head_dim=32, mlp_ratio=3),
    'base': dict(depths=[4, 4, 18, 4], embed_dims=[96, 192, 384, 768],
                 topks=[1, 4, 16, -2], head_dim=32, mlp_ratio=3),
}
ARCH_ALIASES = {'t': 'tiny', 's': 'small', 'b': 'base'}
_ARCH_REQUIRED = ('depths', 'embed_dims', 'topks', 'head_dim', 'mlp_ratio')
_ARCH_OPTIONAL = ('qk_dims', 'side_dwconv', 'kv_downsample_mode', 'kv_per_wins',
                  'kv_downsample_ratios', 'param_attention', 'param_routing',
                  'diff_routing', 'soft_routing', 'global_heads')


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_nhwc(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    def forward_nhwc(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)


def _recomputes(module: nn.Module) -> bool:
    """Whether ``module``'s recompute options apply now: training with autograd on,
    not tracing (an export records one forward, without a backward)."""
    return module.training and torch.is_grad_enabled() and not tracing()


class BiFormerBlock(nn.Module):
    """Conv position encoding, then pre-norm attention and MLP residuals.

    NHWC in and out: a stage keeps one (N, H, W, C) tensor from its down-sampling layer
    to its output, with no permute between or inside blocks (the depthwise convs take
    the NHWC map through :meth:`DepthwiseConv2d.forward_nhwc`: a channels-last view for
    cuDNN, one Triton kernel with ``'triton'``, an NCHW copy for the native kernels).

    The token mixer is ``attn_type`` (:data:`~mmbiformer.ops.mixers.ATTN_TYPES`); by
    default BiFormer's rule: BRA for ``topk >= 1``, global attention for -1 (without
    LePE) and -2 (with LePE). :func:`~mmbiformer.ops.mixers.build_token_mixer` builds
    every type: BiFormer's own from the block's options, the others from ``attn_cfg``
    and ``stage``.
    """

    def __init__(self, dim: int, num_heads: int, topk: int, n_win: int, mlp_ratio: float,
                 drop_path: float = 0., qk_dim: int = None, side_dwconv: int = 5,
                 auto_pad: bool = True, global_heads: int = 8, attn_type: str = None,
                 stage: int = 0, attn_cfg: dict = None, mlp_recompute: str = None,
                 **bra_kwargs):
        super().__init__()
        if not (isinstance(topk, int) and (topk >= 1 or topk in (-1, -2))):
            raise ArgumentError(f'topk must be >= 1 (routing), -1 (global attention) or '
                                f'-2 (global attention with LePE), got {topk!r}')
        attn_type = attn_type or ('bra' if topk > 0 else 'global')
        self.pos_embed = DepthwiseConv2d(dim, 3)
        self.norm1 = LayerNorm(dim, eps=1e-6)
        self.attn = build_token_mixer(
            attn_type, dim, num_heads, stage, attn_cfg, topk=topk, n_win=n_win,
            qk_dim=qk_dim, side_dwconv=side_dwconv, auto_pad=auto_pad,
            global_heads=global_heads, **bra_kwargs)
        self.norm2 = LayerNorm(dim, eps=1e-6)
        hidden = int(mlp_ratio * dim)
        self.mlp = Mlp(dim, hidden, gelu_recompute=mlp_recompute == 'gelu')
        self.mlp_recompute = mlp_recompute
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        # Randomness inside the body (dropout in a mixer) makes a recomputation read
        # and restore the RNG state on the host; BiFormer's own body has none.
        self.random_body = any(
            getattr(m, 'p', 0) > 0 if isinstance(m, nn.modules.dropout._DropoutNd)
            else getattr(m, 'drop_prob', 0) > 0
            for m in (*self.pos_embed.modules(), *self.attn.modules(), *self.mlp.modules()))

    def _mlp(self, h: torch.Tensor, inside_checkpoint: bool = False) -> torch.Tensor:
        if self.mlp_recompute == 'mlp' and not inside_checkpoint and _recomputes(self):
            if self.mlp.runs_fused(h):  # the fused op recomputes its first layer itself
                return self.mlp(h, recompute_fc1=True)
            # Nothing random inside the MLP (DropPath is outside): no RNG state to keep,
            # which also keeps it capturable in a CUDA graph.
            return cp.checkpoint(self.mlp, h, use_reentrant=False, preserve_rng_state=False)
        return self.mlp(h)

    def _body(self, x: torch.Tensor, attn_scale: Optional[torch.Tensor],
              inside_checkpoint: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
        """The block but its last residual add: (x + pos + attention, MLP branch).
        Each residual add is fused with the norm that reads its sum (ops/layer_norm.py),
        or in a forward-only pass with the convolution that makes it."""
        if forward_only(x) and self.pos_embed.runs_triton(x):
            x = self.pos_embed.forward_nhwc(x, add_input=True)  # x + dwconv(x), one kernel
            h = self.norm1(x)
        else:
            x, h = self.norm1.add_forward(x, self.pos_embed.forward_nhwc(x))
        with self._norm_output_recomputed(self.norm1, x, h, inside_checkpoint):
            a = self.attn(h)
        x, h = self.norm2.add_forward(x, a, attn_scale)
        with self._norm_output_recomputed(self.norm2, x, h, inside_checkpoint):
            return x, self._mlp(h, inside_checkpoint)

    @staticmethod
    def _norm_output_recomputed(norm: LayerNorm, source: torch.Tensor, output: torch.Tensor,
                                inside_checkpoint: bool):
        """The norm's output computed again in the backward, not kept, where the policy
        says so; not inside an activation checkpoint, which keeps nothing of the body."""
        if inside_checkpoint or not norm_output_recomputes(current_policy()):
            return contextlib.nullcontext()
        return norm.output_recomputed(source, output)

    def forward(self, x: torch.Tensor, recompute: bool = False) -> torch.Tensor:  # NHWC
        """``recompute``: keep only ``x`` for the backward, which runs the body again
        (activation checkpointing). DropPath draws its random numbers out here, in the
        same order as without, so the recomputation needs no RNG state (which also
        keeps it capturable in a CUDA graph)."""
        attn_scale = drop_path_scale(self.drop_path, x)
        if recompute:
            x, m = cp.checkpoint(self._body, x, attn_scale, True, use_reentrant=False,
                                 preserve_rng_state=self.random_body)
        else:
            x, m = self._body(x, attn_scale)
        return x + self.drop_path(m)


def _resolve_arch(arch: Union[str, dict]) -> dict:
    if isinstance(arch, str):
        name = ARCH_ALIASES.get(arch.lower(), arch.lower())
        if name not in ARCH_SETTINGS:
            raise ArgumentError(f'arch must be one of {sorted(ARCH_SETTINGS)} (or '
                                f'{sorted(ARCH_ALIASES)}) or a dict, got {arch!r}')
        return copy.deepcopy(ARCH_SETTINGS[name])
    if not isinstance(arch, dict):
        raise ArgumentError(f'arch must be a str or a dict, got {type(arch).__name__}')
    missing = [k for k in _ARCH_REQUIRED if k not in arch]
    unknown = [k for k in arch if k not in _ARCH_REQUIRED + _ARCH_OPTIONAL]
    if missing or unknown:
        raise ArgumentError(f'arch dict: missing keys {missing}, unknown keys {unknown}; '
                            f'required {list(_ARCH_REQUIRED)}, optional {list(_ARCH_OPTIONAL)}')
    arch = copy.deepcopy(arch)
    for key in ('depths', 'embed_dims', 'topks'):
        if len(arch[key]) != 4:
            raise ArgumentError(f'arch[{key!r}] needs 4 entries (one per stage), '
                                f'got {arch[key]!r}')
    return arch


def _cp_stages(with_cp) -> Tuple[int, ...]:
    """``with_cp`` (bool, or the indices of the stages to checkpoint) as stage indices."""
    if isinstance(with_cp, bool):
        return (0, 1, 2, 3) if with_cp else ()
    if (isinstance(with_cp, (list, tuple))
            and all(isinstance(i, int) and 0 <= i <= 3 for i in with_cp)):
        return tuple(sorted(set(with_cp)))
    raise ArgumentError(f'with_cp must be a bool or a list of stage indices (0-3), got '
                        f'{with_cp!r}')


MLP_RECOMPUTE = (None, 'gelu', 'mlp')


# How the backbone runs: the engine's (its runtime), named here only for the arguments
# that earlier versions took.
RUNTIME_KEYS = ('cuda_graph', 'compile')


def _deprecated_runtime(runtime, deprecated: dict,
                        mlp_recompute: Optional[str]) -> Tuple[Optional[dict], Optional[str]]:
    """``(runtime options or None, mlp_recompute)`` from the arguments, through the one
    deprecation path of earlier versions' options, each with a warning that says what to
    write: ``runtime=dict(...)``, ``cuda_graph=`` and ``compile=`` go to the engine's
    ``BackboneRuntimeHook``; ``runtime=dict(mlp_recompute=...)`` moves beside
    ``with_cp``."""
    unknown = sorted(set(deprecated) - set(RUNTIME_KEYS))
    if unknown:
        raise ArgumentError(f'BiFormer got unexpected arguments {unknown}')
    if isinstance(runtime, dict) and 'mlp_recompute' in runtime:
        runtime = dict(runtime)
        moved = runtime.pop('mlp_recompute')
        if mlp_recompute is not None and moved != mlp_recompute:
            raise ArgumentError(f'mlp_recompute={mlp_recompute!r} and runtime=dict('
                                f'mlp_recompute={moved!r}) disagree: keep the first')
        mlp_recompute = moved
        warnings.warn('BiFormer(runtime=dict(mlp_recompute=...)) is deprecated: write '
                      'BiFormer(mlp_recompute=...), beside with_cp (what the backward '
                      'recomputes is set on the network)', FutureWarning, stacklevel=3)
        runtime = runtime or None
    if mlp_recompute not in MLP_RECOMPUTE:
        raise ArgumentError(f'mlp_recompute must be one of {MLP_RECOMPUTE}, got '
                            f'{mlp_recompute!r}')
    if runtime is None and not deprecated:
        return None, mlp_recompute
    if hasattr(runtime, 'options'):  # a runtime object
        runtime = runtime.options()
    if runtime is not None and not isinstance(runtime, dict):
        raise ArgumentError(f'runtime must be a dict with keys {list(RUNTIME_KEYS)}, '
                            f'got {runtime!r}')
    options = dict({k: v for k, v in (runtime or {}).items() if k != 'type'}, **deprecated)
    unknown = sorted(set(options) - set(RUNTIME_KEYS))
    if unknown:
        raise ArgumentError(f'runtime: unknown keys {unknown}; valid: {list(RUNTIME_KEYS)}')
    written = ', '.join(f'{k}={v!r}' for k, v in options.items())
    warnings.warn(f'BiFormer(runtime=...) and its cuda_graph= / compile= are deprecated: '
                  f'how the backbone runs is the engine\'s, attached from outside. Write '
                  f'custom_hooks = [dict(type=\'BackboneRuntimeHook\', {written})] in the '
                  f'config (configs/_base_/biformer.py), or in code '
                  f'BackboneRuntime({written}).attach(backbone) '
                  f'(mmbiformer/engine/backbone_runtime.py)', FutureWarning, stacklevel=3)
    return options, mlp_recompute


def _per_stage(value, name: str) -> list:
    values = list(value) if isinstance(value, (list, tuple)) else [value] * 4
    if len(values) != 4:
        raise ArgumentError(f'{name} needs 4 entries (one per stage), got {value!r}')
    return values


@MODELS.register_module()
class BiFormer(BaseModule):
    """BiFormer: Vision Transformer with Bi-Level Routing Attention (CVPR 2023).

    A convolutional stem, then four stages of blocks (position-embedding conv, BRA,
    MLP), each stage after a strided-conv down-sampling. Module names are the official
    code's, so official checkpoints load as published.

    Args:
        arch (str | dict): ``'tiny'``, ``'small'``, ``'base'`` (or ``t``/``s``/``b``),
            or a dict with ``depths``, ``embed_dims``, ``topks``, ``head_dim``,
            ``mlp_ratio`` (optional: ``qk_dims``, ``side_dwconv``, BRA options).
        in_channels (int): Input image channels. Default 3.
        n_win (int): Regions per side in BRA: 7 for 224 classification, 16 for
            detection, 8 for segmentation (the official choices). Default 7.
        out_indices (Sequence[int]): Stages (0-3) whose outputs are returned.
        out_norm (str): ``'layernorm'`` (a channel LayerNorm on each returned stage,
            for dense prediction), ``'batchnorm'`` (the official classification norm
            of the last stage) or ``'none'``.
        drop_path_rate (float): Stochastic depth rate, linear over the blocks.
        frozen_stages (int): -1 freezes nothing, 0 the stem, k the stem and the first
            k stages (with their down-sampling and output norms), as mmdet's Swin.
        norm_eval (bool): Keep BatchNorm layers in eval mode while training.
        with_cp (bool | list[int]): Activation checkpointing, in every stage or in
            the stages listed.
        mlp_recompute (str, optional): What each MLP's backward computes again instead
            of keeping it (training only; the same numbers and keys): ``'gelu'``
            GELU's output, ``'mlp'`` the first layer and GELU. Default None: nothing.
            With ``with_cp``, everything the backward recomputes.
        auto_pad (bool): Pad maps to multiples of ``n_win`` inside BRA, so that any
            input size works. Default True.
        norm_cfg (dict): Norm of the stem and down-sampling convs.
        attn_impl (str): BRA backend (``'auto'``, ``'triton'``, ``'sdpa'``,
            ``'reference'``), all with the same numerics
            (:class:`~mmbiformer.ops.bra.BiLevelRoutingAttention`).
        bra_cfg (dict, optional): More arguments of every BRA module.
        dwconv_impl (str): Kernels of the convs on CUDA (``'native'``, ``'cudnn'``,
            ``'triton'``; :mod:`mmbiformer.ops.dwconv`).
        attn_types (Sequence[str], optional): Token mixer per stage, for ablations
            (``'bra'``, ``'global'``, ``'quadtree'``, ``'shunted'``, ``'window'``).
            Default: BiFormer's own (:mod:`mmbiformer.ops.mixers`).
        attn_cfg (dict, optional): Options of those mixers by type.
        runtime (dict, optional): Deprecated: how the forward runs (CUDA graphs,
            ``torch.compile``) is attached from outside, by the engine's
            ``BackboneRuntimeHook`` (:mod:`mmbiformer.engine.backbone_runtime`). Given
            here, it is attached as before, with a warning that says what to write.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=...)`` loads
            an official ImageNet checkpoint or one of ours.
    """

    def __init__(self,
                 arch: Union[str, dict] = 'small',
                 in_channels: int = 3,
                 n_win: int = 7,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 out_norm: str = 'layernorm',
                 drop_path_rate: float = 0.,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: Union[bool, Sequence[int]] = False,
                 mlp_recompute: Optional[str] = None,
                 auto_pad: bool = True,
                 norm_cfg: dict = dict(type='BN'),
                 attn_impl: str = 'auto',
                 bra_cfg: dict = None,
                 dwconv_impl: str = 'native',
                 attn_types: Sequence[str] = None,
                 attn_cfg: dict = None,
                 runtime: Optional[dict] = None,
                 init_cfg: dict = None,
                 **deprecated):
        super().__init__(init_cfg=init_cfg)
        runtime, mlp_recompute = _deprecated_runtime(runtime, deprecated, mlp_recompute)
        arch = _resolve_arch(arch)
        dims = list(arch['embed_dims'])
        self.embed_dims = dims
        self.in_channels = in_channels
        depths = list(arch['depths'])
        qk_dims = _per_stage(arch.get('qk_dims', dims), 'qk_dims')

        if isinstance(out_indices, int):
            out_indices = (out_indices, )
        out_indices = tuple(i + 4 if i < 0 else i for i in out_indices)
        if not out_indices or any(i not in range(4) for i in out_indices):
            raise ArgumentError(f'out_indices must be a non-empty subset of (0, 1, 2, 3), '
                                f'got {out_indices!r}')
        if out_norm not in ('layernorm', 'batchnorm', 'none'):
            raise ArgumentError(f"out_norm must be 'layernorm', 'batchnorm' or 'none', "
                                f'got {out_norm!r}')
        if out_norm == 'batchnorm' and out_indices != (3, ):
            raise ArgumentError("out_norm='batchnorm' is the classification norm of the "
                                f'last stage: use out_indices=(3,), got {out_indices!r}')
        if not (isinstance(frozen_stages, int) and -1 <= frozen_stages <= 4):
            raise ArgumentError(f'frozen_stages must be an int in [-1, 4] (-1: nothing, 0: '
                                f'the stem, k: the stem and k stages), got {frozen_stages!r}')
        if not 0 <= drop_path_rate < 1:
            raise ArgumentError(f'drop_path_rate must be in [0, 1), got {drop_path_rate!r}')
        self.out_indices = out_indices
        self.out_norm = out_norm
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.cp_stages = _cp_stages(with_cp)

        def norm(c):
            return build_norm_layer(norm_cfg, c)[1]

        self.downsample_layers = nn.ModuleList([
            nn.Sequential(
                GemmConv2d(in_channels, dims[0] // 2, 3, stride=2, padding=1),
                norm(dims[0] // 2), nn.GELU(),
                GemmConv2d(dims[0] // 2, dims[0], 3, stride=2, padding=1), norm(dims[0]))
        ] + [
            nn.Sequential(GemmConv2d(dims[i], dims[i + 1], 3, stride=2, padding=1),
                          norm(dims[i + 1])) for i in range(3)
        ])

        bra_kwargs = {k: arch[k] for k in ('kv_downsample_mode', 'param_attention',
                                           'param_routing', 'diff_routing',
                                           'soft_routing') if k in arch}
        bra_kwargs['attn_impl'] = attn_impl
        bra_kwargs.update(bra_cfg or {})
        kv_per_wins = _per_stage(arch.get('kv_per_wins', -1), 'kv_per_wins')
        kv_ratios = _per_stage(arch.get('kv_downsample_ratios', -1),
                               'kv_downsample_ratios')
        self.attn_types = resolve_attn_types(attn_types, arch['topks'])
        attn_cfg = check_attn_cfg(attn_cfg)
        dpr = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.stages = nn.ModuleList()
        for i in range(4):
            # BRA's heads split qk_dim; the other mixers' split the channels.
            heads_of = qk_dims[i] if self.attn_types[i] == 'bra' else dims[i]
            blocks = [
                BiFormerBlock(
                    dims[i], num_heads=heads_of // arch['head_dim'], topk=arch['topks'][i],
                    n_win=n_win, mlp_ratio=arch['mlp_ratio'],
                    drop_path=dpr[sum(depths[:i]) + j], qk_dim=qk_dims[i],
                    side_dwconv=arch.get('side_dwconv', 5), auto_pad=auto_pad,
                    global_heads=arch.get('global_heads', 8),
                    attn_type=self.attn_types[i], stage=i, attn_cfg=attn_cfg,
                    kv_per_win=kv_per_wins[i], kv_downsample_ratio=kv_ratios[i],
                    mlp_recompute=mlp_recompute, **bra_kwargs) for j in range(depths[i])
            ]
            self.stages.append(nn.Sequential(*blocks))

        if out_norm == 'layernorm':
            # A ModuleDict keyed '0'..'3' gives the official names extra_norms.i.
            self.extra_norms = nn.ModuleDict(
                {str(i): LayerNorm2d(dims[i], eps=1e-6) for i in out_indices})
        elif out_norm == 'batchnorm':
            self.norm = nn.BatchNorm2d(dims[-1])
        set_dwconv_impl(self, dwconv_impl)
        self._freeze_stages()
        if runtime is not None:  # the deprecated argument (warned)
            RUNTIMES.build(dict(type='BackboneRuntime', **runtime)).attach(self)

    @property
    def recomputes_randomly(self) -> bool:
        """Some block the backward recomputes (``with_cp``) draws random numbers inside,
        which reads the RNG state on the host: no CUDA graph can hold it."""
        return any(b.random_body for i in self.cp_stages for b in self.stages[i])

    # -- weights -------------------------------------------------------------
    def _default_init(self, m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.LayerNorm):
            nn.init.constant_(m.bias, 0)
            nn.init.constant_(m.weight, 1.0)

    def init_weights(self) -> None:
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            from ...weights.pretrained import load_pretrained_backbone
            self.apply(self._default_init)  # for any key the checkpoint lacks
            load_pretrained_backbone(self, cfg['checkpoint'],
                                     prefix=cfg.get('prefix', None),
                                     allow_partial=cfg.get('allow_partial', False))
            self._is_init = True
        elif cfg is None:
            self.apply(self._default_init)
        else:
            super().init_weights()

    # -- training behaviour ------------------------------------------------------
    def _frozen_modules(self) -> list:
        k = self.frozen_stages
        if k < 0:
            return []
        # The stem (downsample_layers[0]) from k = 0 on, then k stages with their
        # downsampling layers and output norms.
        modules = list(self.downsample_layers[:max(k, 1)]) + list(self.stages[:k])
        if self.out_norm == 'layernorm':
            modules += [self.extra_norms[str(i)] for i in range(k)
                        if str(i) in self.extra_norms]
        return modules

    def _freeze_stages(self) -> None:
        for m in self._frozen_modules():
            m.eval()
            for p in m.parameters():
                p.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    # -- forward -----------------------------------------------------------------
    def _run_stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        recompute = i in self.cp_stages and _recomputes(self)
        for block in self.stages[i]:
            x = block(x, recompute)
        return x

    def forward(self, x: torch.Tensor) -> tuple:
        """The outputs of the stages in ``out_indices`` for an NCHW batch ``x``."""
        if x.dim() != 4:
            raise ArgumentError(f'BiFormer expects an NCHW image batch, got shape '
                                f'{tuple(x.shape)}')
        outs = []
        if x.is_cuda:  # the stem's convs then write channels-last maps
            x = x.contiguous(memory_format=torch.channels_last)
        for i in range(4):
            # Down-sampling convs emit channels-last maps, so that this is a view: the
            # stage then runs on one contiguous NHWC tensor.
            x = self.downsample_layers[i](x).permute(0, 2, 3, 1)
            x = self._run_stage(i, x.contiguous())
            if i in self.out_indices:
                if self.out_norm == 'layernorm':
                    out = self.extra_norms[str(i)].forward_nhwc(x)
                    outs.append(out.permute(0, 3, 1, 2).contiguous())
                elif self.out_norm == 'batchnorm':
                    outs.append(self.norm(x.permute(0, 3, 1, 2)))
                else:
                    outs.append(x.permute(0, 3, 1, 2).contiguous())
            x = x.permute(0, 3, 1, 2)  # NCHW in shape, channels-last in memory
        return tuple(outs)

    def output_sizes(self, h: int, w: int) -> list:
        """(height, width) of each returned stage for an ``h`` x ``w`` input: every
        down-sampling conv (3x3, stride 2, padding 1) halves, rounding up."""
        sizes = []
        for i in range(4):
            for _ in range(2 if i == 0 else 1):  # the stem has two such convs
                h, w = -(-h // 2), -(-w // 2)
            if i in self.out_indices:
                sizes.append((h, w))
        return sizes
