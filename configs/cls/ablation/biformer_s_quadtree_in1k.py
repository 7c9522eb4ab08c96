# Ablation: BiFormer-S with BRA replaced in stages 1-3 by QuadTree-B attention (Tang
# et al., ICLR 2022): a 4/3/2-level token pyramid per stage (the official QuadTree-B
# levels), top-8 keys kept per query at each level.
# Stem, conv position embedding, MLPs, depths, widths, stage-4 global attention and the
# ImageNet recipe of biformer_s_in1k.py are unchanged: only the attention differs.
_base_ = ['../biformer_s_in1k.py']

model = dict(backbone=dict(attn_types=('quadtree', 'quadtree', 'quadtree', 'global')))
