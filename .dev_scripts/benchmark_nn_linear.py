"""Run 7: ``tools/benchmark.py`` with the blocks' ``Linear`` layers behaving as
``nn.Linear`` in captured steps too (autograd's bias-gradient sums), for the figure
without the matrix-vector bias gradient.

    PYTHONPATH=. python3 .dev_scripts/benchmark_nn_linear.py cls --arch small --batch 128 \
        --amp bf16 --mode train --cuda-graph
"""
import runpy
import sys

import mmbiformer.ops.linear as linear

linear.in_captured_step = lambda: False
sys.argv = ['tools/benchmark.py'] + sys.argv[1:]
runpy.run_path('tools/benchmark.py', run_name='__main__')
