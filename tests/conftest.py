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
