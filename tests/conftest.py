"""Shared test set-up and helpers (import them with ``from conftest import ...``)."""
import os
import sys

import pytest
import torch

# Test helpers (the official oracle) are imported as top-level modules.
sys.path.insert(0, os.path.dirname(__file__))
# Without a GPU the Triton kernels run in Triton's interpreter, so that their numerics
# are checked on every machine. Read when Triton is first imported: set it first.
if not torch.cuda.is_available():
    os.environ.setdefault('TRITON_INTERPRET', '1')

# The repository root: configs/ and tools/ are read from here.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
# A BiFormer small enough for CPU tests: one block per stage, narrow, 8-wide heads.
TINY_ARCH = dict(depths=[1, 1, 1, 1], embed_dims=[16, 32, 64, 128], topks=[1, 2, 4, -2],
                 head_dim=8, mlp_ratio=2)


def run_in_process(*args) -> None:
    """The tool ``args[0]`` (a path under the repository) with arguments ``args[1:]``,
    run as ``__main__`` in this process: its imports are already loaded, so it takes
    seconds where a new process takes ten (the suite's time budget)."""
    import runpy
    argv, sys.argv = sys.argv, [str(a) for a in args]
    try:
        runpy.run_path(os.path.join(ROOT, args[0]), run_name='__main__')
    finally:
        sys.argv = argv


def tool_error(*args) -> str:
    """:func:`run_in_process` for a run that must end as the tools end on a user error:
    ``sys.exit('error: ...')`` (an exception the tool does not catch, which a user would
    see as a traceback, fails the test). Returns the message."""
    with pytest.raises(SystemExit) as e:
        run_in_process(*args)
    message = str(e.value.code)
    assert message.startswith('error: '), message
    return message
