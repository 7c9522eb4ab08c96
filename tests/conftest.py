"""The suite's set-up, before any test module is imported. Helpers the tests share are
in ``helpers.py`` (``from helpers import ...``: pytest puts this folder on the module
path for its test files, as for this one)."""
import os

import torch

# Without a GPU the Triton kernels run in Triton's interpreter, so that their numerics
# are checked on every machine. Read when Triton is first imported: set it first.
if not torch.cuda.is_available():
    os.environ.setdefault('TRITON_INTERPRET', '1')

# With pytest-xdist, each worker is one of several busy processes on the machine's
# cores: one intra-op thread each (and in the tools it starts), as torchrun gives its
# processes. Two threads per worker oversubscribed the cores (docs/get_started.md).
if os.environ.get('PYTEST_XDIST_WORKER'):
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    torch.set_num_threads(1)

# The suite runs inside OpenMMLab: registrations and stack fixes, as configs load them.
import mmbiformer.openmmlab  # noqa: E402,F401
