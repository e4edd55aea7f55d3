"""Sampling phase of one default step (64 prompts x 8 samples: generate + verify + reference),
streamed vs serial, on the same actors, alternating so machine load hits both alike.

    .venv/bin/python benchmarks/rollout_stream.py [--engines 2] [--reps 10]

serial:   fleet.generate (all groups), then verify the batch, then reference log-probs.
streamed: rlsys.loop.pipeline.stream_round: groups verified and sent to the reference as they
          finish. Prints medians over reps 2..N (rep 1 warms up) and checks both draw the same samples.
"""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

import numpy as np


def main() -> None:
    import ray
    from omegaconf import OmegaConf

    from rlsys.config import RLSysConfig, to_dataclass, validate
    from rlsys.loop.controller import prepare_data_and_model
    from rlsys.runtime.faults import FaultLog
    from rlsys.loop.metrics import StepTimer
    from rlsys.reference.server import ReferenceServer
    from rlsys.rollout.fleet import RolloutFleet
    from rlsys.loop.pipeline import stream_round
    from rlsys.rollout.worker import RolloutWorker, engine_spec
    from rlsys.verify.pool import VerifierPool
    from rlsys.verify.worker import VerifierWorker

    ap = argparse.ArgumentParser()
    ap.add_argument("--engines", type=int, default=1)
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args()
    cfg = OmegaConf.structured(RLSysConfig)
    cfg.run_dir = "/tmp/rlsys_bench_rollout_stream"
    cfg.rollout.num_engines = args.engines
    cfg = validate(to_dataclass(cfg))
    train, _, model_path, tok = prepare_data_and_model(cfg)
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {
        "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_LOGGING_LEVEL": "WARNING", "TOKENIZERS_PARALLELISM": "false"}})
    engines = [ray.remote(RolloutWorker).options(num_cpus=0.25).remote(engine_spec(cfg, model_path, i)) for i in range(args.engines)]
    ref = ray.remote(ReferenceServer).options(num_cpus=0.25).remote(model_path, cfg.model.dtype, 1.0, tok.pad_token_id,
                                                                    cfg.learner.micro_batch_size)
    roles = SimpleNamespace(fleet=RolloutFleet(engines, cfg.rollout), faults=FaultLog(), reference=ref,
                            verifiers=VerifierPool([ray.remote(VerifierWorker).options(num_cpus=0.25).remote()]))
    ray.get([e.get_version.remote() for e in engines])
    rng, res = np.random.default_rng(0), {"serial": [], "streamed": []}
    for rep in range(args.reps):
        idx = rng.permutation(len(train))[:cfg.trainer.prompts_per_step]
        t = time.perf_counter()
        serial = roles.fleet.generate(train, idx, seed=rep)
        gen = time.perf_counter() - t
        roles.verifiers.score(serial)
        serial.ref_logprobs = ray.get(ref.logprobs.remote(serial.prompt_token_ids, serial.response_token_ids))
        res["serial"].append((time.perf_counter() - t, gen, gen + 0.0, int(serial.response_lengths.sum())))
        timer = StepTimer()
        streamed = stream_round(cfg, roles, train, idx, rep, timer)
        s = timer.seconds
        res["streamed"].append((timer.total(), s["generate"], sum(s.values()), int(streamed.response_lengths.sum())))
        assert all((a == b).all() for a, b in zip(serial.response_token_ids, streamed.response_token_ids))
    for name, rows in res.items():
        wall, gen, total, toks = (np.array(c) for c in zip(*rows[1:]))
        extra = f", stage sum {np.median(total):.3f} s" if name == "streamed" else ""
        print(f"{args.engines} engine(s) {name:>8}: phase wall {np.median(wall):.3f} s (min {wall.min():.3f}), "
              f"generate {np.median(gen):.3f} s, {np.median(toks / gen):,.0f} gen tokens/s{extra}")


if __name__ == "__main__":
    main()
