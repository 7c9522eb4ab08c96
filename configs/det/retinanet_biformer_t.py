# RetinaNet 1x with BiFormer-T: as S, with drop path 0.1 (no official T recipe).
_base_ = './retinanet_biformer_s.py'
model = dict(backbone=dict(arch='tiny', drop_path_rate=0.1,
                           init_cfg=dict(checkpoint='biformer-t_in1k')))
