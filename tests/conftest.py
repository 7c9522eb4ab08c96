"""The suite's set-up, before any test module is imported. Helpers the tests share are
in ``helpers.py`` (``from helpers import ...``: pytest puts this folder on the module
path for its test files, as for this one)."""
import os

import torch

# Without a GPU the Triton kernels run in Triton's interpreter, so that their numerics
# are checked on every machine. Read when Triton is first imported: set it first.
if not torch.cuda.is_available():
    os.environ.setdefault('TRITON_INTERPRET', '1')

# The suite runs inside OpenMMLab: registrations and stack fixes, as configs load them.
import mmbiformer.openmmlab  # noqa: E402,F401
