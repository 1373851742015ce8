#!/usr/bin/env bash
# One-command install of the whole mmdwnet stack into a virtual environment.
#
#   bash tools/install.sh [VENV]        (default: .venv at the repo root; `make install` calls this)
#
# Steps: venv -> torch/torchvision -> mmcv 2.1.0 with compiled ops (cached wheel,
# else the matching prebuilt wheel in ../shared/wheels, else a source build with the build-only
# pins of requirements/build.txt) -> OpenMMLab stack (runtime pins: requirements/constraints.txt) ->
# `pip install -e .`.  A second run on a ready machine only re-checks and finishes in seconds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-${VENV:-$ROOT/.venv}}"
PYTHON="${PYTHON:-python3.11}"
CACHE="${MMDWNET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmdwnet}"
SHARED_WHEELS="${MMDWNET_SHARED_WHEELS:-$ROOT/../shared/wheels}"
MMCV_VERSION=2.1.0

step() { printf '\n\033[1m[install %s] %s\033[0m\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf '\n\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" -c 'import sys; assert sys.version_info[:2] >= (3, 9)' 2>/dev/null \
  || die "$PYTHON is missing or older than 3.9; set PYTHON=/path/to/python3.11"

if [ ! -x "$VENV/bin/python" ]; then
  step "creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)
# Runtime pins (numpy<2, setuptools, matplotlib, the stack) for every pip call; users pass the
# same file to their own installs: pip install -c requirements/constraints.txt PACKAGE
CONSTRAINTS=(-c "$ROOT/requirements/constraints.txt")
# mmdwnet is installed in setuptools' legacy editable mode (an egg-link to the checkout), where
# openmim finds it (`mim list`, `mim train mmdwnet`); see requirements/constraints.txt.

# ---- fast path: everything already there -------------------------------------------------------
if "$PY" - "$ROOT/requirements/constraints.txt" <<'PYEOF' 2>/dev/null; then
import importlib.metadata as md, sys
want = {'torch': '2.14.1', 'torchvision': '0.29.1', 'mmcv': '2.1.0', 'mmengine': '0.10.7',
        'mmpretrain': '1.2.0', 'mmdet': '3.3.0', 'mmsegmentation': '1.2.2'}
for name, ver in want.items():
    if md.version(name).split('+')[0] != ver:
        sys.exit(1)
import mmcv.ops  # compiled ops present
from packaging.requirements import Requirement  # runtime pins of requirements/constraints.txt
for line in open(sys.argv[1]):
    line = line.split('#')[0].strip()
    if line:
        req = Requirement(line)
        if not req.specifier.contains(md.version(req.name), prereleases=True):
            sys.exit(1)
for extra in ('ftfy', 'regex', 'mim', 'matplotlib', 'skimage', 'sklearn', 'pycocotools', 'pytest',
              'onnx', 'onnxruntime', 'onnxscript', 'onnxruntime_extensions'):
    # the last four: requirements/deploy.txt
    __import__(extra)
PYEOF
  step "stack already installed in $VENV; (re)installing mmdwnet in editable mode"
  SETUPTOOLS_ENABLE_FEATURES=legacy-editable "${PIP[@]}" install -q --no-deps --no-build-isolation -e "$ROOT"
  "$PY" -c 'import mmdwnet; print("mmdwnet", mmdwnet.__version__, "ready in", __import__("sys").prefix)'
  "$PY" -c 'from mmdwnet.ops.backends import cpu as k; print("mmdwnet CPU kernels:", k.build(verbose=True) or "not built, pure-PyTorch ops")'
  exit 0
fi

step "1/4 PyTorch + torchvision (requirements/torch.txt)"
"${PIP[@]}" install --progress-bar on -r "$ROOT/requirements/torch.txt" "${CONSTRAINTS[@]}"

# ---- mmcv with compiled ops ------------------------------------------------------------------
TORCH_VER=$("$PY" -c 'import torch; print(torch.__version__)')
PY_TAG=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
KEY="mmcv-${MMCV_VERSION}_${PY_TAG}_torch-${TORCH_VER//+/_}"
WHEEL_DIR="$CACHE/wheels/$KEY"
mkdir -p "$WHEEL_DIR"
wheel=$(ls "$WHEEL_DIR"/mmcv-${MMCV_VERSION}-*.whl 2>/dev/null | head -n1 || true)

if [ -z "$wheel" ] && [ "$TORCH_VER" = "2.14.1+cu130" ] && [ "$PY_TAG" = cp311 ] \
   && [ -f "$SHARED_WHEELS/mmcv-${MMCV_VERSION}-cp311-cp311-linux_x86_64.whl" ] \
   && [ "$(uname -m)" = x86_64 ]; then
  step "2/4 mmcv ${MMCV_VERSION}: using the prebuilt wheel in $SHARED_WHEELS (same Python/torch)"
  cp "$SHARED_WHEELS/mmcv-${MMCV_VERSION}-cp311-cp311-linux_x86_64.whl" "$WHEEL_DIR/"
  wheel="$WHEEL_DIR/mmcv-${MMCV_VERSION}-cp311-cp311-linux_x86_64.whl"
fi

if [ -z "$wheel" ]; then
  step "2/4 mmcv ${MMCV_VERSION}: building from source with compiled ops (about 20 min on 2 cores)"
  # build-only pins (setuptools<70 for mmcv's setup.py); the runtime install below restores
  # the runtime ones (requirements/constraints.txt)
  "${PIP[@]}" install -q -r "$ROOT/requirements/build.txt"
  BUILD="$(mktemp -d)"
  trap 'rm -rf "$BUILD"' EXIT
  (cd "$BUILD" && "${PIP[@]}" download -q --no-deps --no-binary :all: "mmcv==${MMCV_VERSION}") \
    || die "could not download the mmcv ${MMCV_VERSION} source distribution from PyPI"
  tar xzf "$BUILD"/mmcv-${MMCV_VERSION}.tar.gz -C "$BUILD"
  SRC="$BUILD/mmcv-${MMCV_VERSION}"
  # torch >= 2.6 headers need C++20; mmcv 2.1.0 hard-codes older standards.
  sed -i 's/-std=c++17/-std=c++20/g; s/-std=c++14/-std=c++20/g' "$SRC/setup.py"
  bash "$ROOT/tools/build_mmcv.sh" "$PY" "$SRC" "$WHEEL_DIR" "$CACHE/mmcv-build.log" || exit 1
  wheel=$(ls "$WHEEL_DIR"/mmcv-${MMCV_VERSION}-*.whl | head -n1)
else
  step "2/4 mmcv ${MMCV_VERSION}: cached wheel $wheel"
fi
"${PIP[@]}" install -q --no-deps "$wheel"
# mmcv's own runtime dependencies (addict, yapf, opencv, ...), resolved against the pinned stack.
"${PIP[@]}" install -q "$wheel" -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/tests.txt" \
  -r "$ROOT/requirements/deploy.txt" "${CONSTRAINTS[@]}"

step "3/4 check that the compiled mmcv ops load"
"$PY" -c 'import mmcv, mmcv.ops; from mmcv.ops import nms, RoIAlign; print("mmcv", mmcv.__version__, "ops OK")' \
  || die "mmcv imported without its compiled ops; remove $WHEEL_DIR and run make install again"

step "4/4 mmdwnet (editable)"
SETUPTOOLS_ENABLE_FEATURES=legacy-editable "${PIP[@]}" install -q --no-deps --no-build-isolation -e "$ROOT"
"$PY" -c 'import mmdwnet; print("mmdwnet", mmdwnet.__version__, "installed in", __import__("sys").prefix)'
"$PY" -c 'from mmdwnet.ops.backends import cpu as k; print("mmdwnet CPU kernels:", k.build(verbose=True) or "not built, pure-PyTorch ops")'
