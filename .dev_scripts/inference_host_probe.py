"""Run 12: the detection backbone's eager fp32 inference (as ``tools/test.py`` runs it),
BiFormer-S of the RetinaNet config against mmdet's Swin-T, at 1x3x800x1216: wall ms per
forward, the host's ms to issue one (the GPU kept busy, so the host never waits) and
the GPU's kernel ms; for BiFormer also the fp32 dot-product precision of the BRA
kernels and the custom ops called directly in forward-only passes or through their
dispatch ("op"), each with its largest error against an fp64 reference.

    PYTHONPATH=. python3 .dev_scripts/inference_host_probe.py OUT_DIR [swin]

Writes OUT_DIR/prof_eval.json and profiles (OUT_DIR/prof_*.txt).
"""
import copy
import json
import sys
import time

import torch
from mmengine.config import Config
from torch.profiler import ProfilerActivity, profile

import mmbiformer  # noqa
from mmbiformer.models.backbones.biformer import BiFormer
from mmbiformer.ops.backends.triton import routed_attention as ra
from mmbiformer.ops.bra import set_attn_impl
from mmbiformer.ops.dwconv import set_impl as set_dwconv_impl

OUT = sys.argv[1]
res = {}
torch.backends.cuda.matmul.allow_tf32 = False
dev = torch.device('cuda')


def host_time(fn, x):
    torch.cuda.synchronize()
    torch.cuda._sleep(int(3e9))  # keep the GPU busy: the host never waits
    t0 = time.perf_counter()
    fn(x)
    t = time.perf_counter() - t0
    torch.cuda.synchronize()
    return t


def gpu_time(fn, x):
    with profile(activities=[ProfilerActivity.CUDA]) as p:
        fn(x)
        torch.cuda.synchronize()
    return sum(e.self_device_time_total for e in p.key_averages()) / 1e6


def wall(fn, x, iters=20):
    for _ in range(3):
        fn(x)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn(x)
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / iters


def profile_to(path, fn, calls=3):
    """Host and kernel tables of ``calls`` forwards into ``path``; kernels per forward."""
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as p:
        for _ in range(calls):
            fn(x)
        torch.cuda.synchronize()
    ka = p.key_averages()
    with open(path, 'w') as f:
        f.write(ka.table(sort_by='self_cpu_time_total', row_limit=40) + '\n\n')
        f.write(ka.table(sort_by='self_cuda_time_total', row_limit=30))
    return sum(e.count for e in ka if e.device_type.name == 'CUDA') / calls


def measure(name, fn, x):
    w = wall(fn, x)
    h = min(host_time(fn, x) for _ in range(3))
    g = gpu_time(fn, x)
    res[name] = dict(wall_ms=w * 1e3, host_ms=h * 1e3, gpu_ms=g * 1e3)
    print(name, {k: round(v, 2) for k, v in res[name].items()}, flush=True)


ONLY_SWIN = len(sys.argv) > 2 and sys.argv[2] == 'swin'
cfg = Config.fromfile('configs/det/retinanet_biformer_s.py')
bb = copy.deepcopy(cfg.model.backbone)
bb.pop('type'); bb.pop('init_cfg', None)
torch.manual_seed(0)
model = BiFormer(**bb).to(dev).eval()
x = torch.randn(1, 3, 800, 1216, device=dev)
fwd = torch.no_grad()(lambda t: model(t))

def biformer_part():
    global ref
    # reference in fp64
    ref_model = copy.deepcopy(model).double()
    set_attn_impl(ref_model, 'reference')
    set_dwconv_impl(ref_model, 'native')
    with torch.no_grad():
        ref = ref_model(x.double())
    del ref_model

    import mmbiformer.models.backbones.biformer as bbmod
    import mmbiformer.ops.policy as policy
    from mmbiformer.ops.backends.triton import dwconv as tdw
    FO = [ra, tdw, policy, bbmod]  # where forward_only is read
    fo_orig = ra.forward_only
    orig = ra._precision


    def setup(prec, fo):
        ra._precision = lambda dtype, p=prec: p if dtype == torch.float32 else orig(dtype)
        for m in FO:
            m.forward_only = fo_orig if fo else (lambda *a: False)


    for prec, fo in [('ieee', False), ('tf32x3', False), ('tf32x3', True), ('ieee', False),
                     ('tf32x3', True), ('tf32', True)]:
        setup(prec, fo)
        out = fwd(x)
        err = [((o.double() - r).abs().max() / r.abs().max()).item() for o, r in zip(out, ref)]
        name = f'biformer_s_{prec}_{"direct" if fo else "op"}'
        res[f'err_{name}'] = err
        print(name, 'rel max err per output', err, flush=True)
        measure(name, fwd, x)
    setup('tf32x3', True)
    ra._precision = orig

    # profile (default precision of the working tree)
    for _ in range(2):
        fwd(x)
    res['kernels_per_fwd'] = profile_to(f'{OUT}/prof_biformer.txt', fwd)
    print('kernels per forward', res['kernels_per_fwd'])

if not ONLY_SWIN:
    biformer_part()

# Swin-T (mmdet)
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
register_all_modules()
from mmbiformer.benchmarking.pipeline import load_any_config
scfg = load_any_config('mmdet::swin/retinanet_swin-t-p4-w7_fpn_1x_coco.py')
sb = copy.deepcopy(scfg.model.backbone)
sb.pop('init_cfg', None)
swin = MODELS.build(sb).to(dev)
swin.eval()  # mmdet's Swin.train() returns None
sfwd = torch.no_grad()(lambda t: swin(t))
measure('swin_t', sfwd, x)
res['swin_kernels_per_fwd'] = profile_to(f'{OUT}/prof_swin.txt', sfwd)
json.dump(res, open(f'{OUT}/prof_eval.json', 'w'), indent=1)
