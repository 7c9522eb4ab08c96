# Ablation: BiFormer-S with BRA replaced in stages 1-3 by non-overlapping 7x7 window
# attention (Swin's W-MSA without shift or relative position bias): the plain local
# baseline.
# Stem, conv position embedding, MLPs, depths, widths, stage-4 global attention and the
# ImageNet recipe of biformer_s_in1k.py are unchanged: only the attention differs.
_base_ = ['../biformer_s_in1k.py']

model = dict(backbone=dict(attn_types=('window', 'window', 'window', 'global')))
