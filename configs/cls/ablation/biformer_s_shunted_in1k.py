# Ablation: BiFormer-S with BRA replaced in stages 1-3 by shunted self-attention (Ren et
# al., CVPR 2022): half the heads attend to K/V aggregated at rate r, half at r/2, with
# r = 8/4/2 (the official rates).
# Stem, conv position embedding, MLPs, depths, widths, stage-4 global attention and the
# ImageNet recipe of biformer_s_in1k.py are unchanged: only the attention differs.
_base_ = ['../biformer_s_in1k.py']

model = dict(backbone=dict(attn_types=('shunted', 'shunted', 'shunted', 'global')))
