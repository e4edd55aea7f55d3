#!/usr/bin/env bash
# Submit a training job to a running Ray cluster, from the repo root:
#   ray start --head --num-cpus=2            # or an existing cluster
#   bash deploy/ray/submit.sh trainer.steps=10 rollout.n=8
# RAY_ADDRESS selects the cluster's job server (default: the local head's dashboard).
# Every node needs the same Python environment (this repo installed with its extras).
set -euo pipefail
cd "$(dirname "$0")/../.."
export RAY_ADDRESS=${RAY_ADDRESS:-http://127.0.0.1:8265}
exec ray job submit --runtime-env deploy/ray/runtime_env.yaml -- python -m rlsys.train "$@"
