# UperNet 160k with BiFormer-T: as S, with drop path 0.2 (no official T recipe).
_base_ = './upernet_biformer_s.py'
model = dict(backbone=dict(arch='tiny', drop_path_rate=0.2,
                           init_cfg=dict(checkpoint='biformer-t_in1k')))
