"""Build hook: ship the configs and the model index inside the package, as OpenMMLab's
toolboxes do (``mmbiformer/.mim/``). Metadata lives in pyproject.toml.

A wheel or a non-editable install then resolves model-zoo names and configs without the
repository; an editable install reads them from the checkout (the package looks there
when ``.mim/`` is absent).
"""
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

MIM_FILES = ('model-index.yml', 'configs')


class BuildPyWithMim(build_py):

    def run(self):
        super().run()
        here = os.path.dirname(os.path.abspath(__file__))
        mim = os.path.join(self.build_lib, 'mmbiformer', '.mim')
        os.makedirs(mim, exist_ok=True)
        for name in MIM_FILES:
            src, dst = os.path.join(here, name), os.path.join(mim, name)
            if os.path.isdir(src):
                shutil.copytree(src, dst, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns('__pycache__'))
            else:
                shutil.copyfile(src, dst)


setup(cmdclass={'build_py': BuildPyWithMim})
