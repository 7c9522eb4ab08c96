"""CSP layers with BRA for mmdet's real-time detectors (the YOLOv8 ``C2f_BRA`` idea).

:class:`CSPLayerBRA` is a C2f-style CSP layer: one 1x1 conv to ``2 * mid`` channels,
split in two; each block (the layer's own bottleneck, then a :class:`BRABlock`) runs on
the output of the previous one, every block's output is kept, and the concatenation goes
through a 1x1 conv. :class:`BRACSPNeXtPAFPN` is RTMDet's ``CSPNeXtPAFPN`` with its CSP
layers (top-down, bottom-up or both) built as :class:`CSPLayerBRA` with the same
channels, blocks and norms, so that a config changes the neck by its type and
``bra_cfg`` only.
"""
import inspect
from typing import Sequence

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmdet.models.layers.csp_layer import CSPNeXtBlock, DarknetBottleneck
from mmdet.models.necks import CSPNeXtPAFPN
from mmengine.model import BaseModule

from ...registry import MODELS
from ..plugins import BRABlock


@MODELS.register_module()
class CSPLayerBRA(BaseModule):
    """C2f-style CSP layer whose blocks end in BRA. Arguments as mmdet's ``CSPLayer``
    (``channel_attention`` aside), plus ``bra_cfg``: :class:`BRABlock` options
    (``n_win``, ``topk``, ``mlp_ratio``, ...)."""

    def __init__(self, in_channels: int, out_channels: int, expand_ratio: float = 0.5,
                 num_blocks: int = 1, add_identity: bool = True,
                 use_depthwise: bool = False, use_cspnext_block: bool = False,
                 conv_cfg: dict = None,
                 norm_cfg: dict = dict(type='BN', momentum=0.03, eps=0.001),
                 act_cfg: dict = dict(type='Swish'), bra_cfg: dict = None,
                 init_cfg: dict = None):
        super().__init__(init_cfg=init_cfg)
        if num_blocks < 1:
            raise ValueError(f'CSPLayerBRA needs num_blocks >= 1, got {num_blocks}')
        mid = int(out_channels * expand_ratio)
        conv = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        bottleneck = CSPNeXtBlock if use_cspnext_block else DarknetBottleneck
        self.main_conv = ConvModule(in_channels, 2 * mid, 1, **conv)
        self.blocks = nn.ModuleList(
            nn.Sequential(bottleneck(mid, mid, 1.0, add_identity, use_depthwise, **conv),
                          BRABlock(mid, **(bra_cfg or {})))
            for _ in range(num_blocks))
        self.final_conv = ConvModule((2 + num_blocks) * mid, out_channels, 1, **conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = list(self.main_conv(x).chunk(2, dim=1))
        for block in self.blocks:
            outs.append(block(outs[-1]))
        return self.final_conv(torch.cat(outs, dim=1))


@MODELS.register_module()
class BRACSPNeXtPAFPN(CSPNeXtPAFPN):
    """``CSPNeXtPAFPN`` with BRA in its CSP layers (see the module doc).

    Args:
        bra_cfg (dict): :class:`BRABlock` options of every BRA block.
        bra_layers (Sequence[str]): Which CSP layers become :class:`CSPLayerBRA`:
            ``'top_down'`` (the P4 and P3 layers; P3 feeds the stride-8 output, where
            small objects are), ``'bottom_up'`` (P4 and P5), or both.
        Other arguments: ``CSPNeXtPAFPN``'s.
    """

    def __init__(self, *args, bra_cfg: dict = dict(n_win=8, topk=8),
                 bra_layers: Sequence[str] = ('top_down', 'bottom_up'), **kwargs):
        super().__init__(*args, **kwargs)
        unknown = set(bra_layers) - {'top_down', 'bottom_up'}
        if unknown or not bra_layers:
            raise ValueError(f"bra_layers must name 'top_down' and/or 'bottom_up', got "
                             f'{bra_layers!r}')
        bound = inspect.signature(CSPNeXtPAFPN.__init__).bind(self, *args, **kwargs)
        bound.apply_defaults()
        a = bound.arguments
        for name in bra_layers:
            layers = getattr(self, f'{name}_blocks')
            for i, old in enumerate(layers):
                layers[i] = CSPLayerBRA(
                    old.main_conv.conv.in_channels, old.final_conv.conv.out_channels,
                    expand_ratio=a['expand_ratio'], num_blocks=a['num_csp_blocks'],
                    add_identity=False, use_depthwise=a['use_depthwise'],
                    use_cspnext_block=True, conv_cfg=a['conv_cfg'],
                    norm_cfg=a['norm_cfg'], act_cfg=a['act_cfg'], bra_cfg=bra_cfg)
