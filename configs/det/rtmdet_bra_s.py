# RTMDet-s (mmdet 3.3's rtmdet_s_8xb32-300e_coco.py, unchanged otherwise) with BRA in
# its neck: each CSP layer of the CSPNeXtPAFPN becomes a C2f-style layer whose block is
# RTMDet's CSPNeXt bottleneck followed by a BRA block (the YOLOv8 C2f_BRA idea:
# mmbiformer/models/det/csp_bra.py). One BRA setting for the three levels: 8x8 regions,
# each attending to its 8 most related regions (P3 at 640: 10x10-token regions).
_base_ = 'mmdet::rtmdet/rtmdet_s_8xb32-300e_coco.py'
custom_imports = dict(imports=['mmbiformer.openmmlab', 'mmbiformer.models.det'],
                      allow_failed_imports=False)

model = dict(
    neck=dict(type='BRACSPNeXtPAFPN', bra_cfg=dict(n_win=8, topk=8),
              bra_layers=('top_down', 'bottom_up')))
