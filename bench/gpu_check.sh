#!/usr/bin/env bash
# One GPU check in under 8 minutes: throughput (ours vs plain, U-Net and U-Net + text encoder), peak memory at
# batch 8, the largest batch for 24 GB and 80 GB, and sampling speed, written to one JSON file.
#
#   bash bench/gpu_check.sh [OUT.json]        # default: gpu_check.json in the current folder
#
# Works offline: packages the machine lacks (diffusers, jsonargparse, torchxrayvision, ...) are installed from
# the wheels carried in bench/wheels (make them with bench/make_wheels.sh; see bench/README.md).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
OUT="${1:-gpu_check.json}"
PY="${PYTHON:-python}"
WHEELS="${WHEELS:-$HERE/wheels}"
LIMIT_S="${LIMIT_S:-470}"

mapfile -t missing < <("$PY" "$HERE/requirements_check.py")
if [ "${#missing[@]}" -gt 0 ]; then
  if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    echo "missing packages (${missing[*]}) and no wheels in $WHEELS: run bench/make_wheels.py on a machine with" \
         "network access and carry bench/wheels along (bench/README.md)" >&2
    exit 2
  fi
  echo "installing from $WHEELS: ${missing[*]}"
  "$PY" -m pip install --quiet --no-index --find-links "$WHEELS" "${missing[@]}"
fi

cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
timeout "$LIMIT_S" "$PY" bench/gpu_check.py --out "$OUT" "${@:2}"
