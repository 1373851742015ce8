#!/usr/bin/env bash
# Build an mmcv wheel with compiled ops from an unpacked source tree, showing progress.
#
#   bash tools/build_mmcv.sh PYTHON SRC_DIR WHEEL_DIR LOG
#
# Prints the elapsed time and ninja step every 30 s; on failure prints the compiler's first
# error and a hint (the full log stays in LOG) and exits 1.  Used by tools/install.sh.
set -uo pipefail
PY=$1 SRC=$2 WHEEL_DIR=$3 LOG=$4
MAX_JOBS="${MAX_JOBS:-$(nproc 2>/dev/null || echo 2)}"
mkdir -p "$WHEEL_DIR" "$(dirname "$LOG")"
(cd "$SRC" && MMCV_WITH_OPS=1 MAX_JOBS="$MAX_JOBS" "$PY" -m pip wheel -v --no-deps \
    --no-build-isolation -w "$WHEEL_DIR" . >"$LOG" 2>&1) &
pid=$!
start=$(date +%s)
while kill -0 "$pid" 2>/dev/null; do
  for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  kill -0 "$pid" 2>/dev/null || break
  last=$(grep -o '\[[0-9]*/[0-9]*\]' "$LOG" 2>/dev/null | tail -n1 || true)
  printf '  ... building mmcv: %ds elapsed, ninja step %s (log: %s)\n' \
    $(( $(date +%s) - start )) "${last:-?}" "$LOG"
done
if ! wait "$pid"; then
  first=$(grep -m1 -E '(error|Error):|fatal error' "$LOG" || true)
  printf '\n\033[31merror:\033[0m the mmcv build failed.\n' >&2
  printf '  first error: %s\n' "${first:-(none found; see the log)}" >&2
  printf '  full log:    %s\n' "$LOG" >&2
  printf '  hint: the build needs gcc/g++ >= 10 with C++20, the Python headers (python3-dev) and\n' >&2
  printf '        torch installed first; with little memory try MAX_JOBS=1 make install.\n' >&2
  exit 1
fi
printf '  mmcv built in %ds\n' $(( $(date +%s) - start ))
