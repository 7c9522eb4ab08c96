#!/usr/bin/env bash
# One-command set-up of mmbiformer on a fresh machine (CPU or GPU).
#
#   bash tools/setup.sh
#
# 1. torch: kept if already installed (e.g. a CUDA build you chose); otherwise
#    torch==$TORCH_VERSION (default 2.13.0). On a CPU machine point pip at a CPU
#    wheel (PIP_FIND_LINKS / PIP_EXTRA_INDEX_URL) so no multi-GB CUDA build is pulled.
# 2. mmcv==2.1.0 built from source with its ops (no wheel exists for new torch), in a
#    temporary virtual environment with the old setuptools its build needs, then
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
    # mmcv 2.1.0's setup.py needs setuptools < 70, torch needs >= 77: build the wheel in
    # a throw-away virtual environment that sees this one's torch (system site
    # packages) but has its own old setuptools, then install the wheel here. The
    # conflict stays inside the build environment (pip's check is off there only).
    BUILD_ENV=$(mktemp -d -t mmcv-build-XXXXXX)
    trap 'rm -rf "$BUILD_ENV"' EXIT
    $PY -m venv --system-site-packages "$BUILD_ENV/venv"
    BPIP="$BUILD_ENV/venv/bin/python -m pip install --no-input --no-warn-conflicts -q"
    $BPIP -r requirements/build.txt
    if $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        export FORCE_CUDA=1
    fi
    echo "building mmcv 2.1.0 with ops from source (about 11 min on 2 cores)..."
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} "$BUILD_ENV/venv/bin/python" -m pip wheel \
        --no-input -q --no-build-isolation --no-deps --no-binary mmcv "mmcv==2.1.0" \
        -w "$BUILD_ENV/wheels"
    $PIP "$BUILD_ENV"/wheels/mmcv-2.1.0-*.whl "mmengine==0.10.7"
fi

$PIP -r requirements/runtime.txt -r requirements/tests.txt -r requirements/deploy.txt
$PIP --no-build-isolation --no-deps -e .
$PY -c "import mmbiformer, mmcv.ops, mmdet, mmseg, mmpretrain; print('mmbiformer set-up OK')"
