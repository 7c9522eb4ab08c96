# BiFormer-B on ImageNet-1k: as BiFormer-S, with the base arch (dims 96..768) and
# drop path 0.3 (wider model, same depth; the rate of the official dense B recipes).
_base_ = './biformer_s_in1k.py'
model = dict(backbone=dict(arch='base', drop_path_rate=0.3), head=dict(in_channels=768))
