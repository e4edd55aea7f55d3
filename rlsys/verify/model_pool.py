"""The actors of one verifier.models entry, and how a batch of samples is scored on them.

A call is cut into verifier.models.<name>.batch_size chunks; each chunk goes to an idle actor (one
chunk per actor at a time, so a chunk's time is its own: the per-batch timeout is honest). An actor
that dies mid-chunk, or runs past timeout_s (then it is killed), is restarted by Ray and the same
chunk is scored again on it; a chunk that fails every attempt gets reward NaN and `lost`, never a
made-up value (training drops its groups, as for rule verifiers). placement=colocated: while the policy
fleet generates the pool holds its chunks (and on GPU the judge engines sleep).
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from rlsys.config.rewards import RewardModelConfig
from rlsys.runtime.deadlines import Deadlines
from rlsys.runtime.faults import ActorLost, FaultLog, call_with_retries
from rlsys.verify.details import VerifierDetails
from rlsys.verify.verdicts import judge_messages, parse_verdict, scalar_reward


class ModelPool:
    def __init__(self, name: str, cfg: RewardModelConfig, workers: list, faults: FaultLog | None = None,
                 deadline_scale: float = 1.0):
        self.name, self.cfg, self.workers, self.faults = name, cfg, workers, faults or FaultLog()
        # the per-batch timeout is this role's fixed deadline (rlsys/runtime/deadlines.py; scale 0 = wait forever)
        self.deadlines = Deadlines(deadline_scale, {"reward_model": cfg.timeout_s})
        self.idle: queue.Queue = queue.Queue()
        for w in workers:
            self.idle.put(w)
        self.awake = threading.Event()
        self.awake.set()
        self._stats_lock, self._stats = threading.Lock(), _zero_stats()

    @property
    def colocated(self) -> bool:
        return self.cfg.placement == "colocated"

    def score(self, prompts: list[list[dict]], responses: list[str], truths: list[str]):
        """(rewards float32 [n], VerifierDetails per sample); NaN = lost."""
        n, size = len(responses), self.cfg.batch_size
        chunks = [slice(s, min(n, s + size)) for s in range(0, n, size)]
        rewards, details = np.zeros(n, np.float32), [None] * n
        with ThreadPoolExecutor(max(1, min(len(chunks), len(self.workers)))) as pool:
            for s, (r, d) in zip(chunks, pool.map(lambda s: self._chunk(prompts[s], responses[s], truths[s]), chunks)):
                rewards[s], details[s] = r, d
        return rewards, details

    def _chunk(self, prompts, responses, truths):
        k = len(responses)
        if self.cfg.kind == "judge":
            args = ([judge_messages(self.cfg.template, p, r, t) for p, r, t in zip(prompts, responses, truths)],)
        else:
            args = (prompts, responses)
        self.awake.wait()  # colocated: not while the fleet generates
        actor = self.idle.get()
        t0 = time.perf_counter()
        try:
            out = call_with_retries(lambda attempt: (actor, actor.score.remote(*args)), "reward_model", self.faults,
                                    deadlines=self.deadlines, units=k)
        except ActorLost as e:
            self.faults.add("faults/reward_model_samples_lost", k)
            why = f"reward model '{self.name}' lost"
            return np.full(k, np.nan, np.float32), [VerifierDetails(reason=why, error=str(e), lost=True) for _ in range(k)]
        finally:
            self.idle.put(actor)
        self._count(k, time.perf_counter() - t0, out)
        per = round(out["seconds"] / k, 6)
        if self.cfg.kind == "judge":
            return self._verdicts(out["texts"], per)
        rewards = [scalar_reward(x, self.cfg.normalize) for x in out["raw"]]
        return np.array(rewards, np.float32), [
            VerifierDetails(reason=f"reward model '{self.name}' scores {r:.4g}", seconds=per,
                            extra={"model": self.name, "score": r, "raw": x}) for r, x in zip(rewards, out["raw"])]

    def _verdicts(self, texts: list[str], per: float):
        c, rewards, details = self.cfg, [], []
        for text in texts:
            reward, parsed, reason = parse_verdict(text, c.verdict, c.score_min, c.score_max, c.pattern)
            rewards.append(0.0 if reward is None else reward)
            extra = {"model": self.name, "judge_text": text, "parsed": parsed or None}
            details.append(VerifierDetails(reason=f"{self.name}: {reason}", seconds=per, extra=extra,
                                           error=None if reward is not None else "unparseable verdict"))
        return np.array(rewards, np.float32), details

    def _count(self, samples: int, wall: float, out: dict) -> None:
        with self._stats_lock:
            s = self._stats
            s["samples"] += samples
            s["seconds"] += wall
            s["prompt_tokens"] += out["prompt_tokens"]
            s["tokens"] += out["tokens"]

    def take_stats(self) -> dict:
        """Samples, seconds (summed over chunks) and tokens since the last take."""
        with self._stats_lock:
            out, self._stats = self._stats, _zero_stats()
        return out

    def hold(self) -> None:
        """placement=colocated, at the start of generation: no new chunk starts; GPU judges sleep (after the
        chunk they are running: an actor runs one call at a time)."""
        self.awake.clear()
        if self.cfg.kind == "judge":
            for w in self.workers:
                w.sleep.remote()

    def release(self) -> None:
        """At the end of generation: judges wake up, held chunks go."""
        import ray

        if self.cfg.kind == "judge":
            try:
                ray.get([w.wake.remote() for w in self.workers])
            except Exception:  # noqa: BLE001  a dead judge restarts awake; its chunk is re-sent by call_with_retries
                pass
        self.awake.set()


def _zero_stats() -> dict:
    return {"samples": 0, "seconds": 0.0, "prompt_tokens": 0, "tokens": 0}


def resolve_model_paths(cfg, log=print) -> None:
    """Each verifier.models entry's path as an HF checkpoint dir: a GGUF spec ("package:file.gguf", as
    model.gguf) is converted once into model.cache_dir; a dir is checked. Fails naming the key."""
    from rlsys.models.resolve import check_model_path

    for name, m in cfg.verifier.models.items():
        if m.path.endswith(".gguf"):
            from rlsys.models.gguf import cached_conversion

            m.path = str(cached_conversion(m.path, cfg.model.cache_dir, None, log=log))
        m.path = str(check_model_path(m.path, key=f"verifier.models.{name}.path"))


def start_model_pools(cfg, groups: dict, faults: FaultLog | None = None) -> dict[str, ModelPool]:
    """Actors for every verifier.models entry (restarted by Ray when they die), in the reward_model placement
    group, or colocated ones in the rollout engines' bundles; waits until their models are loaded."""
    import ray

    from rlsys.runtime.cluster import actor_options
    from rlsys.runtime.deadlines import PROBE_GROUP
    from rlsys.verify.reward_workers import JudgeWorker, ScalarRewardWorker

    resolve_model_paths(cfg)
    pools, slot, res = {}, 0, cfg.cluster.reward_model
    for name, m in cfg.verifier.models.items():
        workers = []
        for i in range(m.num_actors):
            if m.placement == "colocated":
                opts = actor_options(groups, "rollout", i % cfg.rollout.num_engines)
                opts.update(num_cpus=0, num_gpus=res.gpus)  # the bundle was sized for it (rlsys/runtime/cluster.py)
            elif "reward_model" in groups:
                opts, slot = actor_options(groups, "reward_model", slot), slot + 1
            else:  # cluster.reward_model reserves nothing (rlsys/runtime/cluster.py role_demands)
                opts = {"num_cpus": 0}
            actor = ray.remote(concurrency_groups=PROBE_GROUP)(JudgeWorker if m.kind == "judge" else ScalarRewardWorker)
            args = ((m.path, m.dtype, m.max_model_len, m.max_new_tokens, res.gpus, cfg.rollout.kv_cache_gb, cfg.trainer.seed)
                    if m.kind == "judge" else (m.path, m.dtype, m.max_model_len, res.cpus, cfg.cluster.threads))
            workers.append(actor.options(**opts, max_restarts=-1).remote(*args))
        pools[name] = ModelPool(name, m, workers, faults, cfg.cluster.deadline_scale)
    ray.get([w.ready.remote() for p in pools.values() for w in p.workers])
    return pools
