"""Every Python code block of the README and docs/ runs (CPU): what a reader copies
works as written."""
import glob
import os.path as osp
import re

import pytest

from helpers import ROOT

PAGES = [osp.join(ROOT, 'README.md')] + sorted(glob.glob(osp.join(ROOT, 'docs', '*.md')))
BLOCKS = [(osp.relpath(page, ROOT), i, code) for page in PAGES for i, code in
          enumerate(re.findall(r'```python\n(.*?)```', open(page).read(), re.S))]


def test_the_pages_have_python_blocks():
    assert {page for page, _, _ in BLOCKS} >= {'README.md', 'docs/usage.md'}


@pytest.mark.parametrize('page,index,code', BLOCKS,
                         ids=[f'{page}#{i}' for page, i, _ in BLOCKS])
def test_python_block_runs(page, index, code):
    exec(compile(code, f'{page} block {index}', 'exec'), {'__name__': '__snippet__'})
