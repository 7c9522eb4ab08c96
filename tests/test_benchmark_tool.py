"""CPU smoke test of tools/benchmark.py: every mode runs and prints its table."""
import importlib.util
import os.path as osp

import pytest
import torch

from helpers import ROOT


@pytest.fixture(scope='module')
def bench_tool():
    spec = importlib.util.spec_from_file_location(
        'benchmark_tool', osp.join(ROOT, 'tools', 'benchmark.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bra_table_every_backend(bench_tool, monkeypatch, capsys):
    monkeypatch.setattr(bench_tool, 'BRA_SIZES', [('tiny', 1, 8, 12, 32, 2, 2, 2)])
    bench_tool.main(['bra', '--iters', '1', '--warmup', '0', '--amp', 'none'])
    out = capsys.readouterr().out
    for impl in ('reference', 'sdpa', 'triton'):
        assert f' {impl} ' in out, out


def test_cls_and_trunk(bench_tool, capsys):
    arch = ['--arch', 'tiny', '--iters', '1', '--warmup', '0', '--amp', 'none']
    bench_tool.main(['cls', '--batch', '2', '--size', '128', '--n-win', '4'] + arch)
    bench_tool.main(['trunk', '--shape', '1', '128', '160', '--n-win', '4'] + arch)
    out = capsys.readouterr().out
    assert 'classifier, batch 2' in out and 'train' in out and 'infer' in out, out
    assert 'trunk fwd+bwd 1x3x128x160' in out, out
    if not torch.cuda.is_available():  # a graph of the step needs a GPU: said, no traceback
        with pytest.raises(SystemExit):
            bench_tool.main(['cls', '--cuda-graph'] + arch)
        assert '--cuda-graph captures CUDA graphs: it needs a GPU' in capsys.readouterr().err


def test_kernels_roofline_table(bench_tool, monkeypatch):
    """Every row of the roofline table computed on a tiny stage (the interpreter runs the
    kernels on a CPU), its bytes counted once per tensor; the tool itself needs a GPU."""
    from mmbiformer.benchmarking import kernels
    stage = kernels.Stage('cls', 1, 1, 6, 6, 16, 4, 2, 1)
    result = kernels.roofline(iters=1, parts=['dwconv', 'layer_norm'], device='cpu',
                              stage_list=[stage])
    rows = result['rows']
    assert [r['kernel'] for r in rows] == [
        'dwconv 5x5 fwd (lce)', 'dwconv 5x5 dx (lce)', 'dwconv 5x5 dw (lce)',
        'dwconv 3x3 fwd (pos embed)', 'dwconv 3x3 dx (pos embed)',
        'dwconv 3x3 dw (pos embed)', 'add + LayerNorm fwd', 'add + LayerNorm bwd']
    one = 6 * 6 * 16 * 2  # one bf16 map
    assert [r['bytes'] // one for r in rows] == [3, 3, 2, 2, 2, 2, 4, 4]
    assert all(r['us'] > 0 and r['library_us'] > 0 for r in rows)
    table = kernels.format_table(result)
    assert '| dwconv 5x5 dw (lce) | cls s1 1x6x6x16 | 4 |' in table, table
    assert '| cls: add + LayerNorm bwd |' in table, table
    # The launch-setting sweep: per setting, ms per step for each stage and kernel size.
    monkeypatch.setattr(kernels, 'FWD_CANDIDATES', kernels.FWD_CANDIDATES[:1])
    monkeypatch.setattr(kernels, 'DW_CANDIDATES', kernels.DW_CANDIDATES[:1])
    totals = kernels.sweep_dwconv(iters=1, dev='cpu', stage_list=[stage])
    assert [list(by_cfg) for by_cfg in totals.values()] == [
        ['TH=8 TW=8 BLOCK_C=64 num_warps=2 UNROLL=0 STAGES=1'],
        ['PB=4 BLOCK_C=64 num_warps=4 progs_per_sm=2 STAGES=1']]
    assert ('| fwd+dx setting | cls s1 3x3 | cls s1 5x5 | total |'
            in kernels.format_sweep(totals))
    from mmbiformer.ops.backends.triton import layer_norm
    shipped = layer_norm.TILE
    monkeypatch.setattr(kernels, 'LN_CANDIDATES', kernels.LN_CANDIDATES[-1:])
    totals = kernels.sweep_layer_norm(iters=1, dev='cpu', stage_list=[stage])
    assert list(totals['bwd']) == [
        'TILE=4096 BWD_TILE=4096 NUM_WARPS=4 BWD_PROGRAMS_PER_SM=4 BWD_STAGES=2 '
        'BWD_DEFER=True']
    assert layer_norm.TILE == shipped  # the shipped settings are back
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match='kernels times CUDA kernels: it needs a GPU'):
            bench_tool.main(['kernels'])


# The seg recipe shrunk to 64x64 crops of 64x96 images (as mmbiformer.utils.short_run).
SMALL_SEG = ['--size', '64', '96', '--batch', '1', '--workers', '0', '--cfg-options',
             'model.data_preprocessor.size=(64,64)',
             'train_dataloader.dataset.pipeline.2.scale=(384,64)',
             'train_dataloader.dataset.pipeline.3.crop_size=(64,64)']


@pytest.mark.slow
def test_pipeline_two_models_one_run(bench_tool, tmp_path, capsys):
    """Two configs in one run: each trains two passes over the same generated data in
    its own process; the table and the JSON give both passes of both."""
    import json
    out = tmp_path / 'result.json'
    config = osp.relpath(osp.join(ROOT, 'configs', 'seg', 'sfpn_biformer_t.py'))
    bench_tool.main(['pipeline', config, '--vs', config, '--iters', '2', '--work-dir',
                     str(tmp_path), '--out', str(out), '--profile', '1'] + SMALL_SEG)
    text = capsys.readouterr().out
    rows = [line.split() for line in text.splitlines()]
    from mmbiformer.benchmarking.pipeline import row_name
    assert [r[1] for r in rows if r[:1] == [row_name(config)]] == [
        'first', 'first'], text
    assert sum(r[:1] == ['steady'] for r in rows) == 2, text
    assert 'new input size' in text, text
    results = json.loads(out.read_text())
    assert len(results) == 2
    for r in results:
        # The profiled iteration (the steady pass's second) is left out of the figures.
        assert [p['iters'] for p in r['passes']] == [2, 1]
        assert r['passes'][0]['setup_s'] > 0  # one run: set-up before the first pass only
        assert r['passes'][1]['setup_s'] != r['passes'][1]['setup_s']
        assert r['batch'] == 1 and r['world'] == 1 and r['size'] == [64, 96]
        for p in r['passes']:
            assert p['fb'] > 0 and p['step'] > 0 and p['img_s'] > 0
            assert abs(p['total'] - (p['data'] + p['fb'] + p['step'])) < 1e-9
    # Data written once, for both models: iters x batch training images.
    images = tmp_path / 'data_ade20k_64x96' / 'ADEChallengeData2016' / 'images' / 'training'
    assert len(list(images.iterdir())) == 2
    # --profile: one steady iteration's operators, by host and by device time.
    profiled = (tmp_path / 'profile_sfpn_biformer_t.txt').read_text()
    assert '1 iterations from 3, by cpu_time_total' in profiled, profiled[:500]


def test_pipeline_new_size_cost_is_per_iteration(bench_tool):
    from mmbiformer.benchmarking.pipeline import SKIP_FIRST, IterationClock, summarise
    clock = IterationClock()
    first, steady = [0.9, 0.8, 0.5, 0.45, 0.6], [0.3, 0.3, 0.3, 0.35, 0.3]
    for p, fbs in enumerate((first, steady)):
        clock.peaks.append(float('nan'))
        clock.reserved.append(float('nan'))
        for fb in fbs:
            clock.rows.append(dict(data=0.01, fb=fb, step=0.05))
            clock.pass_of_iter.append(p)
    r = summarise(clock, batch=2, world=1)
    extra = sorted(a - b for a, b in list(zip(first, steady))[SKIP_FIRST:])
    assert abs(r['new_size_extra_median'] - extra[len(extra) // 2]) < 1e-9
    assert abs(r['new_size_extra_max'] - extra[-1]) < 1e-9
    assert abs(r['passes'][1]['total'] - (0.01 + 0.31 + 0.05)) < 1e-9
    assert abs(r['passes'][1]['img_s'] - 2 / 0.37) < 1e-9
    # An epoch's figure as a log reads it: the later half of the pass.
    assert abs(r['passes'][0]['later_total'] - (0.06 + (0.5 + 0.45 + 0.6) / 3)) < 1e-9


@pytest.mark.parametrize('phase_sync, pass_sync, last, syncs', [
    (False, False, False, 1), (True, False, False, 3), (False, True, False, 0),
    (False, True, True, 1)])
def test_pipeline_clock_synchronises_once_per_iteration(monkeypatch, phase_sync, pass_sync,
                                                        last, syncs):
    """By default only at the iteration's end (the host may queue the step while the
    GPU finishes the backward, as in training); --phase-sync at every boundary;
    --pass-sync at a pass's last iteration only."""
    from mmbiformer.benchmarking import pipeline
    calls = []
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'synchronize', lambda: calls.append(1))
    monkeypatch.setattr(torch.cuda, 'reset_peak_memory_stats', lambda: None)
    monkeypatch.setattr(torch.cuda, 'max_memory_allocated', lambda: 0)
    monkeypatch.setattr(torch.cuda, 'max_memory_reserved', lambda: 0)
    monkeypatch.setattr(pipeline, 'graph_pool_spare', lambda: 0)
    clock = pipeline.IterationClock(phase_sync=phase_sync, pass_sync=pass_sync)
    clock.begin_pass()
    clock.iter_start()
    clock.step_start()
    calls.clear()
    clock.iter_end(last_of_pass=last)
    clock.iter_start()
    clock.step_start()
    assert len(calls) == syncs
    assert clock.rows[0]['fb'] >= 0 and clock.rows[0]['step'] >= 0


def test_pipeline_clock_times_the_set_up(monkeypatch):
    """From the run's start to its first iteration, credited to the pass it opens."""
    from mmbiformer.benchmarking import pipeline
    ticks = iter([10.0, 13.5, 14.0, 15.0])
    monkeypatch.setattr(pipeline.IterationClock, 'now', staticmethod(lambda sync=True: next(ticks)))
    clock = pipeline.IterationClock()
    clock.run_start()
    clock.begin_pass()
    clock.iter_start()
    clock.iter_end()
    assert clock.setup == {0: 3.5}


def test_pipeline_peak_never_exceeds_what_the_allocator_held(monkeypatch):
    """Peak = allocated + the graph pools' free bytes, but warm-ups allocate from the
    pools, so bytes freed there since the peak must not be counted twice."""
    from mmbiformer.benchmarking import pipeline
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'reset_peak_memory_stats', lambda: None)
    monkeypatch.setattr(torch.cuda, 'max_memory_allocated', lambda: 10 * 2**30)
    monkeypatch.setattr(torch.cuda, 'max_memory_reserved', lambda: 12 * 2**30)
    monkeypatch.setattr(pipeline, 'graph_pool_spare', lambda: 9 * 2**30)
    clock = pipeline.IterationClock()
    clock.begin_pass()
    clock._note_peak()
    assert clock.peaks == [12.0] and clock.reserved == [12.0]


def test_pipeline_errors(bench_tool, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        bench_tool.main(['pipeline', 'configs/det/no_such.py', '--work-dir', str(tmp_path)])
    assert 'config file not found' in str(e.value)
    with pytest.raises(SystemExit) as e:
        bench_tool.main(['pipeline', osp.join(ROOT, 'configs/det/retinanet_biformer_t.py'),
                         '--vs', 'mmdet::swin/no_such_config.py', '--work-dir', str(tmp_path)])
    assert 'mmdet::swin/no_such_config.py' in str(e.value)


def test_pipeline_keeps_the_schedules_first_phase(bench_tool, tmp_path):
    """A later phase (Swin's cosine from epoch 20, its end left to the run's end) would
    end before it begins in a two-epoch benchmark run; mmengine refuses it."""
    from mmbiformer.benchmarking.pipeline import load_any_config, prepare
    cfg = load_any_config('mmpretrain::swin_transformer/swin-tiny_16xb64_in1k.py')
    assert [s.get('begin', 0) for s in cfg.param_scheduler] == [0, 20]
    prepare(cfg, 2, str(tmp_path), amp=False, workers=None)
    assert [s['type'] for s in cfg.param_scheduler] == ['LinearLR']


def test_loader_rates(bench_tool, tmp_path, capsys):
    """The loader benchmark times one worker and the config's DataLoader on generated
    ImageNet-layout JPEGs listed as often as the batches need."""
    import json
    out = tmp_path / 'loader.json'
    bench_tool.main(['loader', 'configs/cls/biformer_t_in1k.py', '--workers', '0', '1',
                     '--batch', '2', '--batches', '2', '--samples', '4', '--size', '48',
                     '64', '--work-dir', str(tmp_path), '--out', str(out)])
    text = capsys.readouterr().out
    assert 'training pipeline on 48x64 JPEGs, batch 2' in text and 'one worker' in text
    result = json.loads(out.read_text())
    assert [r['workers'] for r in result['rows']] == [0, 1]
    assert result['per_worker'] > 0 and all(r['img_s'] > 0 for r in result['rows'])
    with open(osp.join(result['data_root'], 'meta', 'train.txt')) as f:
        assert len(f.read().splitlines()) == 2 * (2 + 2) * 1  # batch x (batches + 2)


def test_pipeline_test_mode_runs_the_test_loop_alone(tmp_path):
    """--test: the config's test loop on the generated validation images (its
    evaluator's annotation file too), no training, fresh weights, fp16 with --amp."""
    from types import SimpleNamespace

    from mmbiformer.benchmarking import pipeline
    cfg = pipeline.load_any_config('configs/det/retinanet_biformer_t.py')
    args = SimpleNamespace(test=True)
    pipeline.point_at_data(cfg, 'coco', str(tmp_path), pipeline.loader_key(args))
    pipeline.prepare_test(cfg, str(tmp_path / 'w'), True, 2)
    assert cfg.test_dataloader.dataset.data_root == str(tmp_path) + '/'
    assert cfg.test_evaluator.ann_file == f'{tmp_path}/annotations/instances_val2017.json'
    assert cfg.train_dataloader is None and cfg.train_cfg is None and cfg.val_cfg is None
    assert cfg.model.backbone.init_cfg is None and cfg.test_cfg.fp16
    assert cfg.test_dataloader.num_workers == 2


def test_fits_search_doubles_then_bisects():
    """The most images that fit each card: monotone trials, each card starting from the
    smaller card's answer, the limit said as such."""
    from mmbiformer.benchmarking import fits
    capacity = {12: 5, 16: 7, 24: 11, 80: 40}  # images that fit, per card
    tried = []

    def run(config, n, card):
        tried.append((card, n))
        return n <= capacity[card]

    table = fits.search(['a.py'], [80, 12, 24, 16], run, limit=32)
    assert table == {'a.py': {12: 5, 16: 7, 24: 11, 80: 32}}
    # doubling, then bisecting; the next card from 12 GiB's 5
    assert tried[:6] == [(12, 1), (12, 2), (12, 4), (12, 8), (12, 6), (12, 5)]
    assert tried[6:9] == [(16, 10), (16, 7), (16, 8)]
    assert fits.largest_batch(lambda n: False) == 0
    assert fits.largest_batch(lambda n: True, limit=5) == 5
    text = fits.format_table(table, 32)
    assert '12 GiB' in text and '80 GiB' in text and '>=32' in text, text


def test_fits_trials_are_capped_and_only_out_of_memory_says_no(monkeypatch, tmp_path):
    import argparse
    from mmbiformer.benchmarking import fits, pipeline
    args = argparse.Namespace(work_dir=str(tmp_path), iters=3, amp=True, phase_sync=False,
                              batch=None, workers=None, data_root=str(tmp_path), profile=None,
                              size=None, cfg_options=None, memory_cap=None)
    commands = []

    def call(cmd, stdout, stderr):  # the trial process: out of memory above 4 images
        commands.append(cmd)
        batch = int(cmd[cmd.index('--batch') + 1])
        stdout.write('torch.OutOfMemoryError: CUDA out of memory. Tried to allocate'
                     if batch > 4 else 'RuntimeError: something else')
        return 1

    monkeypatch.setattr(pipeline.subprocess, 'call', call)
    assert fits.run_trial(args, 'a.py', 8, 12.0, 'tool') is False
    cmd = commands[-1]
    assert cmd[cmd.index('--memory-cap') + 1] == '12.0' and cmd[cmd.index('--iters') + 1] == '3'
    with pytest.raises(pipeline.RunFailed, match='failed'):  # not memory: the search stops
        fits.run_trial(args, 'a.py', 2, 12.0, 'tool')
    assert args.batch is None and args.memory_cap is None  # each trial has its own
    if not torch.cuda.is_available():
        with pytest.raises(pipeline.UserError, match='needs one'):
            pipeline.cap_memory(12)
        with pytest.raises(pipeline.UserError, match='it needs a GPU'):
            fits.run(argparse.Namespace(**vars(args), fits=[12.0], limit=4), 'tool')


def test_pipeline_says_where_the_memory_sits(monkeypatch):
    """GPU runs end with parameters, gradients, optimizer state, the graphs' pools and
    the allocator's peaks (here with stand-ins for the CUDA queries)."""
    from mmbiformer.benchmarking import memory, pipeline
    from mmbiformer.engine import shape_graphs
    monkeypatch.setattr(shape_graphs, 'graph_pools', lambda: (3 * 2**30, 2**30))
    monkeypatch.setattr(torch.cuda, 'max_memory_allocated', lambda: 5 * 2**30)
    monkeypatch.setattr(torch.cuda, 'max_memory_reserved', lambda: 7 * 2**30)
    model = torch.nn.Linear(256, 256)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 256)).sum().backward()
    optimizer.step()
    parts = memory.run_parts(model, optimizer)
    per = (256 * 256 + 256) * 4 / 2**30
    assert parts['parameters'] == pytest.approx(per) and parts['gradients'] == pytest.approx(per)
    assert parts['optimizer state'] == pytest.approx(2 * per, rel=1e-3)  # + step counters
    assert (parts["graphs' pools"], parts["graphs' pools, free"]) == (3, 1)
    assert (parts['peak allocated'], parts['peak reserved']) == (5, 7)
    result = dict(config='configs/det/maskrcnn_biformer_s.py', world=1, device='GPU',
                  batch=2, workers=2, size=[800, 1216], memory=parts, passes=[],
                  new_size_extra_median=0., new_size_extra_max=0., optim_wrapper='AmpOptimWrapper')
    assert "graphs' pools 3.00" in pipeline.table([result])


def test_fits_command_end_to_end(bench_tool, monkeypatch, tmp_path, capsys):
    """``pipeline CONFIG --fits ...``: data made once for the largest trial, each trial
    asked in turn, the table printed and written (trials stand in: no GPU here)."""
    import json
    from mmbiformer.benchmarking import fits
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    asked = []

    def trial(args, config, batch, card, tool):
        asked.append((batch, card, args.iters, args.data_root))
        return batch <= {12.0: 1, 16.0: 3}[card]

    monkeypatch.setattr(fits, 'run_trial', trial)
    out = tmp_path / 'fits.json'
    bench_tool.main(['pipeline', osp.join(ROOT, 'configs/det/retinanet_biformer_t.py'),
                     '--fits', '16', '12', '--limit', '4', '--size', '64', '64',
                     '--work-dir', str(tmp_path), '--out', str(out)])
    text = capsys.readouterr().out
    assert [a[:2] for a in asked] == [(1, 12.), (2, 12.), (2, 16.), (4, 16.), (3, 16.)]
    assert {a[2] for a in asked} == {3} and len({a[3] for a in asked}) == 1  # made once
    assert 'retinanet_biformer_t.py' in text and '12 GiB' in text, text
    assert json.loads(out.read_text()) == {
        osp.join(ROOT, 'configs/det/retinanet_biformer_t.py'): {'12.0': 1, '16.0': 3}}
