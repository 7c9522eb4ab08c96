# UperNet 160k with BiFormer-B: as S, with the base arch and drop path 0.4 (official).
_base_ = './upernet_biformer_s.py'
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.4,
                  init_cfg=dict(checkpoint='biformer-b_in1k')),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
