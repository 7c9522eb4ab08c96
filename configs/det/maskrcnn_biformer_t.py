# Mask R-CNN 1x with BiFormer-T: as S, with drop path 0.1 (no official T recipe; T is
# the shallow arch, so it gets half of S's 0.2).
_base_ = './maskrcnn_biformer_s.py'
model = dict(backbone=dict(arch='tiny', drop_path_rate=0.1,
                           init_cfg=dict(checkpoint='biformer-t_in1k')))
