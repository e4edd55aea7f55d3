#!/usr/bin/env bash
# Submit a training job to a running Ray cluster, from the repo root:
#   ray start --head --num-cpus=2            # or an existing cluster
#   bash deploy/ray/submit.sh trainer.steps=10 rollout.n=8
# RAY_API_SERVER_ADDRESS picks the cluster's job server (default: the local head's dashboard).
# Every node needs the same Python environment (this repo installed with its extras).
# RLSYS_RUNTIME_ENV: the runtime_env file (default: upload this checkout as the working dir);
# set it empty where the nodes' environment has rlsys installed already (an image, a venv).
set -euo pipefail
cd "$(dirname "$0")/../.."
export RAY_API_SERVER_ADDRESS=${RAY_API_SERVER_ADDRESS:-${RAY_ADDRESS:-http://127.0.0.1:8265}}
# Ray 2.60 heads enable token auth when a token exists (~/.ray/auth_token), but the job CLI only
# sends it in token mode: follow the head.
if [ -z "${RAY_AUTH_MODE:-}" ] && { [ -n "${RAY_AUTH_TOKEN:-}" ] || [ -f "${RAY_AUTH_TOKEN_PATH:-$HOME/.ray/auth_token}" ]; }; then
  export RAY_AUTH_MODE=token
fi
RUNTIME_ENV=${RLSYS_RUNTIME_ENV-deploy/ray/runtime_env.yaml}
exec ray job submit ${RUNTIME_ENV:+--runtime-env "$RUNTIME_ENV"} -- python -m rlsys.train "$@"
