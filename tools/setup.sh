#!/usr/bin/env bash
# One-command set-up of mmbiformer on a fresh machine (CPU or GPU).
#
#   bash tools/setup.sh
#
# 1. torch: kept if already installed (e.g. a CUDA build you chose); otherwise
#    torch==$TORCH_VERSION (default 2.13.0). On a CPU machine point pip at a CPU
#    wheel (PIP_FIND_LINKS / PIP_EXTRA_INDEX_URL) so no multi-GB CUDA build is pulled.
# 2. mmcv==2.1.0 built from source with its ops (no wheel exists for new torch);
#    FORCE_CUDA=1 is set automatically when torch sees a GPU. Skipped if an mmcv
#    2.1.0 with compiled ops is already importable.
# 3. mmengine / mmdet / mmsegmentation / mmpretrain and the project (editable).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PIP="$PY -m pip install --no-input"
TORCH_VERSION=${TORCH_VERSION:-2.13.0}

if ! $PY -c "import torch" 2>/dev/null; then
    $PIP "torch==${TORCH_VERSION}"
fi
# After torch: torch asks for setuptools >= 77, but mmcv 2.1.0's build needs < 70.
# pip warns about the conflict during the build; runtime.txt settles it afterwards.
$PIP -r requirements/build.txt
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

if $PY -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '2.1.0'" 2>/dev/null; then
    echo "mmcv 2.1.0 with ops already installed"
else
    # mmcv's own runtime needs, so that --no-build-isolation finds them.
    $PIP addict packaging Pillow pyyaml yapf opencv-python "mmengine==0.10.7"
    if $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        export FORCE_CUDA=1
    fi
    echo "building mmcv 2.1.0 with ops from source (about 11 min on 2 cores)..."
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
        $PIP --no-build-isolation --no-binary mmcv "mmcv==2.1.0"
fi

$PIP -r requirements/runtime.txt -r requirements/tests.txt -r requirements/deploy.txt
$PIP --no-build-isolation --no-deps -e .
$PY -c "import mmbiformer, mmcv.ops, mmdet, mmseg, mmpretrain; print('mmbiformer set-up OK')"
