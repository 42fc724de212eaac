#!/usr/bin/env bash
# `make gpu-check`: the one-shot measurement of the GPU path (scripts/gpu_check.py says what it runs and writes).
# PYTHON: the interpreter with the CUDA build of torch (default python3); WHEELS: install only from that folder;
# OUT: the report folder (default gpu-check).
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" scripts/gpu_check.py --out "${OUT:-gpu-check}" ${WHEELS:+--wheels "$WHEELS"}
