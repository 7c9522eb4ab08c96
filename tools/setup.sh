#!/usr/bin/env bash
# One-command set-up of mmbiformer on a fresh machine (CPU or GPU).
#
#   bash tools/setup.sh
#
# 1. torch: kept if already installed (e.g. a CUDA build you chose); otherwise
#    torch==$TORCH_VERSION (default 2.13.0). On a CPU machine point pip at a CPU
#    wheel (PIP_FIND_LINKS / PIP_EXTRA_INDEX_URL) so no multi-GB CUDA build is pulled.
# 2. mmcv==2.1.0 built from source with its ops (no wheel exists for new torch), in a
#    build that sees the old setuptools it needs from a temporary folder, then
#    installed as a wheel; FORCE_CUDA=1 is set automatically when torch sees a GPU.
#    Skipped if an mmcv 2.1.0 with compiled ops is already importable.
# 3. mmengine / mmdet / mmsegmentation / mmpretrain and the project (editable).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PIP="$PY -m pip install --no-input"
TORCH_VERSION=${TORCH_VERSION:-2.13.0}

if ! $PY -c "import torch" 2>/dev/null; then
    $PIP "torch==${TORCH_VERSION}"
fi
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

if $PY -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '2.1.0'" 2>/dev/null; then
    echo "mmcv 2.1.0 with ops already installed"
else
    # mmcv 2.1.0's setup.py needs setuptools < 70, torch needs >= 77. The build tools
    # go into a throw-away folder put first on PYTHONPATH for the build only (this
    # environment's torch stays visible, in a virtualenv too); the wheel is then
    # installed here. Nothing of the old setuptools reaches this environment.
    BUILD_ENV=$(mktemp -d -t mmcv-build-XXXXXX)
    trap 'rm -rf "$BUILD_ENV"' EXIT
    $PIP -q --no-warn-conflicts --target "$BUILD_ENV/tools" -r requirements/build.txt
    if $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        export FORCE_CUDA=1
    fi
    echo "building mmcv 2.1.0 with ops from source (about 9 min on 2 cores)..."
    PYTHONPATH="$BUILD_ENV/tools${PYTHONPATH:+:$PYTHONPATH}" PATH="$BUILD_ENV/tools/bin:$PATH" \
        MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
        $PY -m pip wheel --no-input -q --no-build-isolation --no-deps --no-binary mmcv \
        "mmcv==2.1.0" -w "$BUILD_ENV/wheels"
    $PIP "$BUILD_ENV"/wheels/mmcv-2.1.0-*.whl "mmengine==0.10.7"
fi

$PIP -r requirements/runtime.txt -r requirements/tests.txt -r requirements/deploy.txt
# One editable install per Python environment: say so when it moves from another clone
# (whose tools would then import this clone's package).
OLD=$(cd / && $PY -c "import os, mmbiformer; print(os.path.dirname(os.path.dirname(os.path.realpath(mmbiformer.__file__))))" 2>/dev/null || true)
$PIP --no-build-isolation --no-deps -e .
if [ -n "$OLD" ] && [ "$OLD" != "$(pwd -P)" ]; then
    echo "note: mmbiformer was installed from $OLD; this environment now imports it from" \
         "$(pwd -P), also when you run $OLD/tools/*.py. Run tools/setup.sh there to switch" \
         "back, or give each clone its own virtualenv."
fi
$PY -c "import mmbiformer.openmmlab, mmcv.ops, mmdet, mmseg, mmpretrain; print('mmbiformer set-up OK')"
