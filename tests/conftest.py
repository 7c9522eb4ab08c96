import os
import sys

import torch

# Test helpers (the official oracle) are imported as top-level modules.
sys.path.insert(0, os.path.dirname(__file__))
# Without a GPU the Triton kernels run in Triton's interpreter, so that their numerics
# are checked on every machine. Read when Triton is first imported: set it first.
if not torch.cuda.is_available():
    os.environ.setdefault('TRITON_INTERPRET', '1')
