#!/usr/bin/env bash
# A separate venv with TRL (the peer that benchmarks/real_model.py compares against), the same
# CPU torch and transformers as rlsys's .venv, so both run the same kernels.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-trl/bin/python ]; then
  python3 -m venv .venv-trl
fi
if ! .venv-trl/bin/python -c "import trl, datasets, math_verify, hydra" >/dev/null 2>&1; then
  TORCH=$(.venv/bin/python -c "import torch; print(torch.__version__.split('+')[0])")
  TF=$(.venv/bin/python -c "import transformers; print(transformers.__version__)")
  .venv-trl/bin/pip install -q "torch==$TORCH" "transformers==$TF" trl datasets accelerate math-verify pyarrow hydra-core  # hydra: rlsys.verify imports the config
fi
.venv-trl/bin/python -c "import trl, torch; print(f'trl {trl.__version__}, torch {torch.__version__}')"
