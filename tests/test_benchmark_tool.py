"""CPU smoke test of tools/benchmark.py: every mode runs and prints its table."""
import importlib.util
import os.path as osp

import pytest

ROOT = osp.join(osp.dirname(__file__), '..')


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
