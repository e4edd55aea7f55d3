"""The cluster on paper, measured: the real controller loop with stand-in engines, verifiers and learner ranks.

    .venv/bin/python benchmarks/scale.py                      # the default sweep below, one process per case
    .venv/bin/python benchmarks/scale.py --cases 8x2x1024x4096 --steps 3

The driver runs rlsys' own controller (loop/controller.run: the rollout manager actor with the fleet's
streaming, the verifier pool and advantages; the learner group's sharding; the weight-sync call) unchanged. Only the actors are
stand-ins, as Ray actors: engines answer each prompt group with random tokens (lengths uniform in
1..max tokens, ~4 characters of text per token) spread over --gen-seconds; verifiers score at random;
learner ranks sleep --train-seconds per step and return the stats the objective declares. No model.

A case is ENGINESxRANKSxSAMPLESxMAX_TOKENS (samples per step = prompts x rollout.n). Each case runs
in a fresh process, so its peak memory is its own. Per step (the median over steps 2.., step 1 warms up):
  driver_cpu_s    CPU seconds of the driver process (every thread: controller, pools, Ray's client)
  driver_share    driver_cpu_s as a share of a --step-seconds step (the issue's yardstick: 60 s)
  mb_in / mb_out  payload bytes the driver received from actors (ray.get) and sent to them (call
                  arguments), counted from the objects themselves: numpy buffers and strings
  peak_rss_gb     the driver's peak resident memory over the whole case
  manager_cpu_s   CPU seconds of the rollout manager actor (rlsys/rollout/manager.py), where the samples
                  now go instead of the driver; manager_peak_rss_gb its peak memory
  wall_s          the step's wall time; sim_s is the stand-ins' simulated time on its critical path
The baseline each figure is read against is in the same run: the same controller at a smaller size
(the sweep's first case) and at shorter responses (the length sweep at 1024 samples).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
N = 8  # samples per prompt (rollout.n)
PROMPT_TOKENS = 256
DEFAULT_CASES = ["8x2x1024x512", "8x2x1024x1024", "8x2x1024x2048", "8x2x1024x4096",  # response length
                 "32x8x8192x4096", "64x32x32768x4096"]  # the cluster sizes of the issue


# ---- stand-in actors ---------------------------------------------------------------------------
# They import nothing that pulls in torch (rlsys.sync, rlsys.rollout.worker do), so that a machine holds
# many: the fleet and the learner group read their answers by attribute, as they read the real ones.
@dataclass
class GroupOutput:
    """The fields of rlsys.rollout.worker.EngineOutput the fleet reads."""

    response_token_ids: list
    behaviour_logprobs: list
    finish_reason: list
    response_text: list
    tokens: int
    policy_version: int = 0
    seconds: float = 0.0
    token_versions: list | None = None
    token_mask: list | None = None  # one-turn groups: none of the episode columns
    turn_index: list | None = None
    episodes: list | None = None
    prompt_token_ids: list | None = None


@dataclass
class PushResult:
    """The fields of rlsys.sync.result.SyncResult the controller reads."""

    bytes: int = 0
    seconds: float = 0.0
    failed: list = field(default_factory=list)
    snapshot: list | None = None
    stages: dict = field(default_factory=dict)
    engine_paths: dict | None = None
    content: str = "full"
    check_s: float = 0.0
    probe_gap: float | None = None
    probe_shift: float | None = None
    by_sender: bool = False


class StandInEngine:
    """RolloutWorker's interface to the fleet (generate_groups, get_version, ...), without a model."""

    def __init__(self, index: int, gen_seconds: float):
        self.index, self.gen_seconds, self.version = index, gen_seconds, 0

    async def generate_groups(self, groups, n, temperature, top_p, max_tokens):
        rng = np.random.default_rng(self.index)
        start, k = time.perf_counter(), len(groups)
        for j, (key, _prompt, _seed) in enumerate(groups):  # groups finish evenly over gen_seconds
            await asyncio.sleep(max(0.0, start + self.gen_seconds * (j + 1) / k - time.perf_counter()))
            lengths = rng.integers(1, max_tokens + 1, n)
            out = GroupOutput([rng.integers(0, 50_000, L) for L in lengths],
                              [np.full(L, -1.0, np.float32) for L in lengths], ["length"] * n,
                              ["abcd" * int(L) for L in lengths], int(lengths.sum()), self.version)
            yield [(key, out)]

    async def get_version(self):
        return self.version

    async def set_version(self, version):
        self.version = version

    async def peak_memory_gb(self):
        return 0.0

    def root_cause(self):
        return None


class StandInVerifier:
    """VerifierWorker.score: a random reward per sample (about half solved)."""

    def ready(self):
        return True

    def score(self, responses, truths, sources, extras=None):
        from rlsys.verify.details import VerifierDetails

        rng = np.random.default_rng(sum(map(len, responses)))  # differs per call: groups get mixed rewards
        rewards = (rng.random(len(responses)) < 0.5).astype(np.float32)
        return rewards, [VerifierDetails(reason="stand-in") for _ in responses]


class StandInLearner:
    """LearnerWorker's interface to the learner group: a train step sleeps; rank 0's push sets the version."""

    def __init__(self, stats: list[str], rank: int, train_seconds: float):
        self.stats, self.rank, self.train_seconds = stats, rank, train_seconds

    def address(self):
        return "127.0.0.1", 0

    def setup(self, addr, port):
        return None

    def train_step(self, shard, denom, num_micro, progress=0.0):
        time.sleep(self.train_seconds)
        out = {k: 0.0 for k in self.stats}
        out.update(tokens=float(sum(len(r) for r in shard.response_token_ids)), train_seconds=self.train_seconds)
        return out

    def per_sample(self, method, shard, num_micro):  # old_logprobs (ppo mini-batches), kept here as the real ranks keep them
        import ray

        return [ray.put([np.zeros(len(r), np.float32) for r in shard.response_token_ids])]

    def end_step(self):
        return None

    def push_weights(self, engines, version, probe=False):  # probe: no weights here to check
        import ray

        if self.rank == 0:
            ray.get([e.set_version.remote(version) for e in engines])
        return PushResult()

    def shutdown(self):
        return None


# ---- what crosses the driver -------------------------------------------------------------------
def payload_bytes(obj, depth: int = 0) -> int:
    """Bytes of the data an object carries: numpy buffers, strings, bytes; containers summed."""
    if isinstance(obj, np.ndarray):
        return obj.nbytes if obj.dtype != object else sum(payload_bytes(x, depth + 1) for x in obj.ravel())
    if isinstance(obj, (str, bytes, bytearray)):
        return len(obj)
    if depth > 6:
        return 0
    if isinstance(obj, (list, tuple)):
        return sum(payload_bytes(x, depth + 1) for x in obj)
    if isinstance(obj, dict):
        return sum(payload_bytes(v, depth + 1) for v in obj.values())
    if is_dataclass(obj) and not isinstance(obj, type):
        return sum(payload_bytes(getattr(obj, f.name), depth + 1) for f in fields(obj))
    return 0


class DriverTraffic:
    """Counts payload bytes the driver gets (ray.get) and sends (actor call arguments)."""

    def __init__(self):
        import ray
        import ray.actor

        self.received = self.sent = 0
        get, remote = ray.get, ray.actor.ActorMethod._remote
        traffic = self

        def counted_get(refs, *a, **k):
            out = get(refs, *a, **k)
            traffic.received += payload_bytes(out)
            return out

        def counted_remote(method, args=None, kwargs=None, **options):
            traffic.sent += payload_bytes(list(args or ())) + payload_bytes(dict(kwargs or {}))
            return remote(method, args, kwargs, **options)

        ray.get = counted_get
        ray.actor.ActorMethod._remote = counted_remote


# ---- one case ----------------------------------------------------------------------------------
def run_case(engines: int, ranks: int, samples: int, max_tokens: int, steps: int, gen_s: float, train_s: float,
             verifiers: int, count_bytes: bool = True) -> dict:
    import ray

    import rlsys.loop.controller as controller
    from rlsys.config import RLSysConfig, check_config
    from rlsys.data.dataset import PromptDataset
    from rlsys.learner.group import LearnerGroup
    from rlsys.learner.objective import reductions
    from rlsys.learner.role_config import learner_role_config
    from rlsys.loop.roles import Roles
    from rlsys.rollout.fleet import RolloutFleet
    from rlsys.runtime.faults import FaultLog
    from rlsys.verify.pool import VerifierPool

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, address="local", log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": f"{ROOT}:{ROOT / 'benchmarks'}"}})
    cfg = RLSysConfig()
    cfg.run_dir = tempfile.mkdtemp(prefix="rlsys-scale-")
    prompts = samples // N
    cfg.rollout.n, cfg.rollout.max_new_tokens, cfg.rollout.num_engines = N, max_tokens, engines
    cfg.rollout.max_model_len = PROMPT_TOKENS + max_tokens
    cfg.trainer.prompts_per_step, cfg.trainer.steps, cfg.trainer.save_checkpoint = prompts, steps, False
    cfg.learner.world_size, cfg.cluster.num_verifiers = ranks, verifiers
    cfg.eval.before_after_samples, cfg.logger.backends, cfg.logger.samples_every = 0, ["jsonl"], 0
    check_config(cfg)
    rng = np.random.default_rng(0)
    data = PromptDataset("stand-in", [""] * prompts * steps,
                         [rng.integers(0, 50_000, PROMPT_TOKENS) for _ in range(prompts * steps)],
                         ["1"] * prompts * steps, ["stand_in"] * prompts * steps)

    def make_engine(i):
        return ray.remote(StandInEngine).options(num_cpus=0).remote(i, gen_s)

    def make_learner(rank, c):
        return ray.remote(StandInLearner).options(num_cpus=0).remote(list(reductions(cfg.algorithm)), rank, train_s)

    t_start = time.perf_counter()
    fleet = RolloutFleet([make_engine(i) for i in range(engines)], cfg.rollout, make_engine)
    pool = VerifierPool([ray.remote(StandInVerifier).options(num_cpus=0, max_concurrency=16).remote()
                         for _ in range(verifiers)], FaultLog())
    ray.get([e.get_version.remote() for e in fleet.engines] + [w.ready.remote() for w in pool.workers])
    learners = LearnerGroup([make_learner(r, None) for r in range(ranks)], learner_role_config(cfg), make_learner)
    roles = Roles(fleet, pool, None, learners, faults=pool.faults)
    startup_s = time.perf_counter() - t_start

    per_step: list[dict] = []
    traffic = DriverTraffic() if count_bytes else SimpleNamespace(received=0, sent=0)
    step_fn = controller.rl_step

    def measured_step(cfg, roles, rollout, *a, **k):  # the controller's own step, with the driver's cost around it
        m0 = rollout.usage()["cpu_s"]
        cpu0, rx0, tx0, t0 = time.process_time(), traffic.received, traffic.sent, time.perf_counter()
        out = step_fn(cfg, roles, rollout, *a, **k)
        cpu1, rx1, tx1, t1 = time.process_time(), traffic.received, traffic.sent, time.perf_counter()
        per_step.append({"driver_cpu_s": cpu1 - cpu0, "mb_in": (rx1 - rx0) / 1e6, "mb_out": (tx1 - tx0) / 1e6,
                         "wall_s": t1 - t0, "manager_cpu_s": rollout.usage()["cpu_s"] - m0})
        manager_rss[0] = rollout.usage()["peak_rss_gb"]
        return out

    manager_rss = [0.0]
    controller.rl_step = measured_step
    controller.run(cfg, roles, data, None, log=lambda *_: None)
    ray.shutdown()
    steady = per_step[1:] or per_step
    med = {k: statistics.median(s[k] for s in steady) for k in steady[0]}
    return {"engines": engines, "ranks": ranks, "samples": prompts * N, "max_tokens": max_tokens, **med,
            "sim_s": gen_s + train_s, "startup_s": startup_s, "manager_peak_rss_gb": manager_rss[0],
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}


# ---- the sweep -----------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=DEFAULT_CASES, help="ENGINESxRANKSxSAMPLESxMAX_TOKENS")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--gen-seconds", type=float, default=2.0, help="simulated generation time of a step")
    ap.add_argument("--train-seconds", type=float, default=1.0, help="simulated train time of a step")
    ap.add_argument("--verifiers", type=int, default=4)
    ap.add_argument("--step-seconds", type=float, default=60.0, help="the step the driver's share is taken of")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per case; a case past it is reported as such")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/scale"))
    ap.add_argument("--no-bytes", action="store_true", help="do not count bytes (the counting's own CPU cost shows)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:  # a child: one case, its result as the last stdout line
        e, r, s, t = map(int, a.one.split("x"))
        print(json.dumps(run_case(e, r, s, t, a.steps, a.gen_seconds, a.train_seconds, a.verifiers, not a.no_bytes)))
        return
    rows = []
    for case in a.cases:
        cmd = [sys.executable, __file__, "--one", case, "--steps", str(a.steps), "--gen-seconds", str(a.gen_seconds),
               "--train-seconds", str(a.train_seconds), "--verifiers", str(a.verifiers)] + (["--no-bytes"] if a.no_bytes else [])
        t0 = time.perf_counter()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout)
            row = json.loads(p.stdout.strip().splitlines()[-1]) if p.returncode == 0 else \
                {"case": case, "failed": (p.stderr or p.stdout)[-600:]}
        except subprocess.TimeoutExpired:
            row = {"case": case, "failed": f"past --timeout={a.timeout} s"}
        row["case_seconds"] = time.perf_counter() - t0
        rows.append(row)
        print(format_row(row, a.step_seconds), flush=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scale.json").write_text(json.dumps({"args": vars(a), "rows": rows}, indent=2))
    print(f"written: {out / 'scale.json'}")


def format_row(r: dict, step_seconds: float) -> str:
    if "failed" in r:
        return f"{r['case']:>18}  FAILED after {r['case_seconds']:.0f} s: {r['failed'].strip().splitlines()[-1:]}"
    return (f"{r['engines']:>3} engines {r['ranks']:>2} ranks {r['samples']:>6} samples <= {r['max_tokens']:>4} tok | "
            f"driver {r['driver_cpu_s']:7.2f} cpu-s/step = {100 * r['driver_cpu_s'] / step_seconds:5.1f}% of "
            f"{step_seconds:.0f} s | manager {r.get('manager_cpu_s', float('nan')):6.2f} cpu-s "
            f"{r.get('manager_peak_rss_gb', float('nan')):5.2f} GB | in {r['mb_in']:8.1f} MB out {r['mb_out']:8.1f} MB | peak rss "
            f"{r['peak_rss_gb']:5.2f} GB | wall {r['wall_s']:6.1f} s (sim {r['sim_s']:.1f} s)")


if __name__ == "__main__":
    main()
