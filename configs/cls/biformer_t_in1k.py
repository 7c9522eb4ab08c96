# BiFormer-T on ImageNet-1k: as BiFormer-S, with the tiny arch. Drop path 0.1: the
# official recipe gives 0.15 for S only; T is shallower (14 vs 30 blocks), so it gets
# the usual smaller rate of tiny models.
_base_ = './biformer_s_in1k.py'
model = dict(backbone=dict(arch='tiny', drop_path_rate=0.1))
