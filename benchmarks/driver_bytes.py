"""Bytes through the driver on a real run: how many times each step's samples cross the controller.

    .venv/bin/python benchmarks/driver_bytes.py [--steps 3] [overrides ...]    # default: model=smollm2_135m

Runs `rlsys train` in this process (the real controller, real engines, verifiers, reference and learners)
with the driver's traffic counted as benchmarks/scale.py counts it: payload bytes (numpy buffers,
strings) of everything the driver gets from actors (ray.get) and sends to them (call arguments). Per
step it prints those bytes next to the step batch's own payload (its RolloutBatch: token ids,
log-probs, texts, rewards, advantages as trained), so the ratio is the number of times the step's data
crossed the driver. Issue 26's goal is metadata only: bytes that do not grow with response length.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/driver_bytes"))
    ap.add_argument("overrides", nargs="*", default=["model=smollm2_135m"], help="Hydra overrides of the run")
    a = ap.parse_args()

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    import rlsys.loop.controller as controller
    from rlsys.config import register_configs, to_dataclass
    from rlsys.config.validation import validate
    from scale import DriverTraffic, payload_bytes

    register_configs()
    overrides = [*a.overrides, f"trainer.steps={a.steps}", "eval.before_after_samples=0", "trainer.save_checkpoint=false",
                 "cluster.address=local"]
    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        raw = OmegaConf.to_container(compose("config", overrides=overrides), resolve=False)
    raw["run_dir"] = tempfile.mkdtemp(prefix="rlsys-driver-bytes-")
    cfg = validate(to_dataclass(OmegaConf.create(raw)))

    traffic, per_step, step_fn = DriverTraffic(), [], controller.rl_step

    import ray
    import scale

    ray.cloudpickle.register_pickle_by_value(scale)  # the manager measures its batch with the same counting

    def measured_step(cfg, roles, rollout, step, *args, **kw):
        rx0, tx0, t0 = traffic.received, traffic.sent, time.perf_counter()
        batch, m = step_fn(cfg, roles, rollout, step, *args, **kw)
        rx1, tx1 = traffic.received, traffic.sent
        # the step's batch as trained, measured where it is (the rollout manager): the driver never has it
        data = ray.get(rollout.actor.__ray_call__.remote(lambda self, s: payload_bytes(self.batches[s]), step))
        traffic.received, traffic.sent = rx1, tx1  # (that call is the benchmark's, not the run's)
        meta = batch.meta
        per_step.append({"step": len(per_step) + 1, "samples": len(meta), "mean_response_tokens":
                         float(meta.response_lengths.mean()), "batch_mb": data / 1e6,
                         "mb_in": (traffic.received - rx0) / 1e6, "mb_out": (traffic.sent - tx0) / 1e6,
                         "crossings": (traffic.received - rx0 + traffic.sent - tx0) / max(1, data),
                         "wall_s": time.perf_counter() - t0})
        print(json.dumps(per_step[-1]), flush=True)
        return batch, m

    controller.rl_step = measured_step
    controller.train(cfg, log=lambda *_: None)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "driver_bytes.json").write_text(json.dumps({"overrides": overrides, "steps": per_step}, indent=2))
    print(f"written: {out / 'driver_bytes.json'}")


if __name__ == "__main__":
    main()
