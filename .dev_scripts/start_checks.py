"""Time and memory of the checks ``tools/train.py --resume PATH`` makes before mmengine
loads the checkpoint (the resume record, then keys / shapes / finite weights against
the built model), on a Mask R-CNN BiFormer-B training checkpoint with AdamW state.

    PYTHONPATH=. python3 .dev_scripts/start_checks.py [CHECKPOINT]

Writes the checkpoint (random AdamW state, ~0.85 GiB) if missing; the page cache is
warmed first, so the figures are CPU work, not disk reads."""
import os
import resource
import sys
import time

import torch

import mmbiformer.openmmlab  # noqa: F401  (stack fixes before any toolbox import)


def main(path: str) -> None:
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope

    import mmbiformer  # noqa: F401
    from mmbiformer.utils.checkpoint_refs import check_resume_checkpoint
    from mmbiformer.utils.launch import load_config
    from mmbiformer.weights.checkpoint import check_model_checkpoint
    init_default_scope('mmdet')
    cfg = load_config('configs/det/maskrcnn_biformer_b.py')
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    if not os.path.exists(path):
        state = model.state_dict()
        adamw = {i: {'step': torch.tensor(1.), 'exp_avg': torch.randn_like(v.float()),
                     'exp_avg_sq': torch.rand_like(v.float())}
                 for i, v in enumerate(state.values()) if v.is_floating_point()}
        torch.save({'meta': {'epoch': 1, 'iter': 10}, 'state_dict': state,
                    'optimizer': {'state': adamw, 'param_groups': []}}, path)
        del adamw
    with open(path, 'rb') as f:  # the page cache warmed
        while f.read(1 << 24):
            pass
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    check_resume_checkpoint(path)
    check_model_checkpoint(model, path)
    seconds = time.perf_counter() - start
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 2**20
    print(f'{path}: {os.path.getsize(path) / 2**30:.2f} GiB; checks before the resume '
          f'{seconds:.2f} s, peak resident memory +{grown:.2f} GiB')


if __name__ == '__main__':
    main(sys.argv[1] if len(sys.argv) > 1 else '/tmp/start_checks_maskrcnn_b.pth')
