"""Run 13: BiFormer-S's eager fp32 inference as ``tools/test.py`` runs it (the RetinaNet
config's backbone, fresh weights, 1x3x800x1216, eval, no autograd): its kernels by GPU
time, and what inference graphs (``InferenceGraphs``) cost and give: the first capture,
a replay against the eager forward's wall time, a new size at its first and second
sight, and the graphs' pool.

    PYTHONPATH=. python3 .dev_scripts/inference_graph_probe.py OUT_DIR

Writes OUT_DIR/kernels.txt (profiler tables) and OUT_DIR/inference_graphs.json.
"""
import copy
import json
import sys
import time

import torch
from mmengine.config import Config
from torch.profiler import ProfilerActivity, profile

import mmbiformer  # noqa: F401
from mmbiformer.engine.shape_graphs import InferenceGraphs
from mmbiformer.models.backbones.biformer import BiFormer


def seconds(fn, *args):
    torch.cuda.synchronize()
    start = time.perf_counter()
    fn(*args)
    torch.cuda.synchronize()
    return time.perf_counter() - start


def main(out: str) -> None:
    res = {}
    cfg = Config.fromfile('configs/det/retinanet_biformer_s.py')
    backbone = copy.deepcopy(cfg.model.backbone)
    backbone.pop('type')
    backbone.pop('init_cfg', None)
    torch.manual_seed(0)
    model = BiFormer(**backbone).cuda().eval()
    x = torch.randn(1, 3, 800, 1216, device='cuda')
    eager = torch.no_grad()(model.forward_eager)
    for _ in range(3):
        eager(x)

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            eager(x)
        torch.cuda.synchronize()
    table = prof.key_averages()
    with open(f'{out}/kernels.txt', 'w') as f:
        f.write(table.table(sort_by='self_cuda_time_total', row_limit=50))
    cuda = [e for e in table if e.device_type.name == 'CUDA']
    res['gpu_ms'] = sum(e.self_device_time_total for e in cuda) / 3e3
    res['kernels'] = sum(e.count for e in cuda) / 3

    reserved = torch.cuda.memory_reserved()
    graphs = InferenceGraphs(model.forward_eager, 8)
    with torch.no_grad():
        graphs(x)  # first sight: eager
        res['first_capture_s'] = seconds(graphs, x)
        res['replay_ms'] = 1e3 * min(seconds(graphs, x) for _ in range(20))
        other = torch.randn(1, 3, 800, 1088, device='cuda')
        res['new_size_s'] = [seconds(graphs, other) for _ in range(2)]  # eager, capture
    res['graph_pool_gib'] = (torch.cuda.memory_reserved() - reserved) / 2**30
    res['eager_wall_ms'] = 1e3 * min(seconds(eager, x) for _ in range(20))
    print(json.dumps(res, indent=1))
    with open(f'{out}/inference_graphs.json', 'w') as f:
        json.dump(res, f, indent=1)


if __name__ == '__main__':
    main(sys.argv[1])
