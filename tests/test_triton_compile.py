"""Every Triton kernel compiles for the GPU, checked on machines without one
(``tests/triton_sm90.py``): Triton's interpreter, which runs the kernels' numerics
here, does not type a kernel, so a kernel the compiler rejects would pass every CPU
test and fail on every GPU. And each fits the shared memory of the architectures our
users train on (``tests/triton_arch_limits.py``)."""
import json
import os
import re
import subprocess
import sys

import pytest

from helpers import ROOT

triton = pytest.importorskip('triton')
KERNELS = os.path.join(ROOT, 'mmbiformer', 'ops', 'backends', 'triton')


def launched_kernels() -> set:
    """Kernels the ops launch (``module.name[grid](...)``), read from the sources."""
    names = set()
    for f in os.listdir(KERNELS):
        if f.endswith('.py'):
            with open(os.path.join(KERNELS, f)) as src:
                names |= set(re.findall(r'\b(?:kernels|dense_kernels|routing_kernels)\.(\w+)\[',
                                        src.read()))
    return names


def test_every_kernel_compiles_for_sm90():
    env = dict(os.environ)
    env.pop('TRITON_INTERPRET', None)
    env['CUDA_VISIBLE_DEVICES'] = ''  # the CPU path, also on a GPU machine
    run = subprocess.run([sys.executable, os.path.join(ROOT, 'tests', 'triton_sm90.py')],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report['errors'] == {}, '\n\n'.join(f'{k}:\n{v}' for k, v in report['errors'].items())
    expected = launched_kernels()
    assert len(expected) >= 10, expected  # the pattern still finds the launches
    assert expected <= set(report['compiled']), expected - set(report['compiled'])


def test_every_kernel_fits_each_architectures_shared_memory():
    """Each kernel, compiled for sm_70 (V100), sm_75 (T4, RTX 20), sm_86 (RTX 30; sm_80
    and sm_89 as it) and sm_90 (H100) at the shipped configs' training shapes and dtypes
    (the oldest of them is ``MIN_CAPABILITY``, below which the ops take PyTorch's
    kernels), asks for no
    more shared memory per block than that architecture has (``triton_arch_limits.py``):
    a tile that fits an H100 but not a T4 would fail at launch, mid-run."""
    env = dict(os.environ)
    env.pop('TRITON_INTERPRET', None)
    env['CUDA_VISIBLE_DEVICES'] = ''
    run = subprocess.run([sys.executable, os.path.join(ROOT, 'tests', 'triton_arch_limits.py')],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report['errors'] == {}, '\n\n'.join(f'{k}:\n{v}' for k, v in report['errors'].items())
    limits = report['limits']
    table = '\n'.join(
        f'{name}: ' + ', '.join(f'sm_{a} {b} of {limits[a]} B' for a, b in per.items())
        for name, per in sorted(report['shared'].items()))
    assert launched_kernels() <= set(report['shared']), table
    from mmbiformer.ops.backends.triton import MIN_CAPABILITY
    assert min(limits) == f'{MIN_CAPABILITY[0]}{MIN_CAPABILITY[1]}', limits
    too_big = [f'{name} sm_{a}: {b} > {limits[a]}' for name, per in report['shared'].items()
               for a, b in per.items() if b > limits[a]]
    assert not too_big, f'{too_big}\n{table}'
