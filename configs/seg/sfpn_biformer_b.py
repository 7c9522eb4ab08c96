# Semantic FPN 80k with BiFormer-B: as S, with the base arch and drop path 0.3 (official).
_base_ = './sfpn_biformer_s.py'
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.3,
                  init_cfg=dict(checkpoint='biformer-b_in1k')),
    neck=dict(in_channels=[96, 192, 384, 768]))
