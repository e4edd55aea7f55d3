"""The learner group: W LearnerWorker actors forming one torch.distributed (FSDP2) group."""

from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np

from rlsys.data.batch import balanced_parts
from rlsys.data.step_batch import as_step_batch
from rlsys.learner.microbatch import micro_batch_count
from rlsys.learner.losses import Denominators
from rlsys.learner.role_config import LearnerRoleConfig
from rlsys.sync.result import SyncResult
from rlsys.learner.objective import advantage_only, combine, reductions
from rlsys.runtime.deadlines import Deadlines, next_check
from rlsys.runtime.notices import notice
from rlsys.runtime.watchdog import WAITS


GRACE_S = 30.0  # after one rank's call fails, how long the others may take to fail too (a death shows there)


class LearnerLost(RuntimeError):
    """A learner rank died: the group's process group is broken, so the group is rebuilt and reloaded
    from the run's last checkpoint (trainer.max_restarts; rlsys/loop/controller.py)."""


class LearnerHung(LearnerLost):
    """A learner rank alive but stuck past its deadline: handled as a death (faults/hangs_learner)."""


def num_mini_batches(samples: int, mini_batch_size: int) -> int:
    """Optimizer steps per epoch: ceil(samples / learner.ppo_mini_batch_size); 0 = the whole batch."""
    return 1 if mini_batch_size <= 0 else max(1, math.ceil(samples / mini_batch_size))


def mini_batches(samples: int, chunks: int, seed: tuple[int, ...]) -> list[np.ndarray]:
    """Row indices of each mini-batch: the batch in order when there is one, else a shuffle seeded by
    `seed` (step, epoch) cut into `chunks` near-equal parts."""
    if chunks == 1:
        return [np.arange(samples)]
    order = np.random.default_rng(seed).permutation(samples)
    return [np.sort(part) for part in np.array_split(order, chunks)]


class LearnerGroup:
    """cfg: what the ranks read (rlsys/learner/role_config.py). make(rank, cfg) -> a new rank's actor,
    in its placement: how rebuild() replaces the group."""

    def __init__(self, actors: list, cfg: LearnerRoleConfig, make=None, deadlines: Deadlines | None = None,
                 setup: bool = True):
        """deadlines: calls past theirs raise LearnerHung (None: wait forever; the ranks must then answer
        `ping` in a "probe" concurrency group, as start_roles makes them). setup=False: the ranks' handles
        only, of a group set up elsewhere (the rollout manager's weight pushes)."""
        self.actors, self.cfg, self.make, self.deadlines = actors, cfg, make, deadlines
        if setup:
            self._setup()

    def _setup(self) -> None:
        import ray

        addr, port = ray.get(self.actors[0].address.remote())
        self._get([a.setup.remote(addr, port) for a in self.actors], "learner:setup")

    def rebuild(self) -> None:
        """Every rank new, with the base weights (a lost rank's peers hold a broken process group):
        the caller loads a checkpoint into them."""
        import ray

        for a in self.actors:
            ray.kill(a, no_restart=True)
        self.actors = [self.make(rank, self.cfg) for rank in range(len(self.actors))]
        self._setup()

    def _get(self, refs: list, kind: str = "learner", units: float = 1.0, on_suspect=None) -> list:
        """ray.get of one call on every rank, raising LearnerLost if a rank died or hung (its deadline
        passed: runtime/deadlines.py). Not a plain ray.get: the dead rank's peers may wait in a
        collective with it until the process group's timeout."""
        import ray
        from ray.exceptions import RayActorError

        pending, failed, t0 = list(refs), None, time.monotonic()
        suspect, hung = self.deadlines.limits(kind, units) if self.deadlines else (math.inf, math.inf)
        with WAITS.waiting(kind, lambda: f"{len(pending)} of {len(refs)} learner ranks"):
            while pending:
                wait = GRACE_S if failed is not None else next_check(time.monotonic() - t0, suspect, hung)
                ready, pending = ray.wait(pending, num_returns=1, timeout=wait)
                if not ready:
                    if failed is not None:  # the rest still wait on the failed rank
                        break
                    if on_suspect is not None and on_suspect():  # a stuck dependency was removed:
                        t0 = time.monotonic()  # the call's deadlines start again
                        continue
                    self._check_alive([refs.index(r) for r in pending], kind, time.monotonic() - t0, hung)
                    continue
                try:
                    ray.get(ready[0])
                except RayActorError as e:
                    raise LearnerLost(f"learner rank {refs.index(ready[0])} of {len(refs)} died: "
                                      f"{str(e).splitlines()[0][:200]}") from e
                except Exception as e:  # a peer's collective error may come before the death is known
                    failed = failed or e
        if failed is not None:
            raise failed
        if self.deadlines:
            self.deadlines.record(kind, time.monotonic() - t0, units)
        return ray.get(refs)

    def _check_alive(self, ranks: list[int], kind: str, elapsed: float, hung: float) -> None:
        """Past the suspect deadline: ranks that do not answer a liveness probe are stopped (LearnerHung);
        past the hung one, every rank still working is."""
        import ray

        probes = {self.actors[r].ping.options(concurrency_group="probe").remote(): r for r in ranks}
        answered, _ = ray.wait(list(probes), num_returns=len(probes), timeout=self.deadlines.probe_s)
        silent = sorted(probes[p] for p in probes if p not in answered)
        if elapsed < hung and not silent:
            return  # slow, not stuck
        stuck = silent or ranks
        why = (f"did not answer a liveness probe within {self.deadlines.probe_s:.0f} s" if silent else
               f"did not finish within the deadline of {hung:.0f} s")
        msg = (f"learner rank(s) {stuck} of {len(self.actors)} {why}, {elapsed:.0f} s into a {kind} call "
               f"(cluster.deadline_scale={self.deadlines.scale}): hung, handled as a death")
        notice(msg)
        raise LearnerHung(msg)

    def reset(self, cfg: LearnerRoleConfig) -> None:
        """Back to the base weights with the objective of `cfg` (fresh optimizer, critic if asked)."""
        self.cfg = cfg
        self._get([a.reset.remote(cfg) for a in self.actors], "learner:setup")

    def _shards(self, tokens: np.ndarray) -> tuple[list[np.ndarray], int]:
        """Rank shards (indices into `tokens`) balanced by tokens, and the micro-batch count every rank
        runs (the most any needs)."""
        shards, lc = balanced_parts(tokens, len(self.actors)), self.cfg.learner
        return shards, max(micro_batch_count(tokens[s], lc.micro_batch_size, lc.max_tokens_per_micro_batch)
                           for s in shards)

    def values(self, batch) -> list[np.ndarray] | None:
        """The critic's per-token values of every sample, in batch order (attached to a step batch)."""
        return self._per_sample("values", batch)

    def reference_logprobs(self, batch) -> list[np.ndarray] | None:
        """The reference's per-token log-probs of every sample, in batch order (cluster.reference_with_learners)."""
        return self._per_sample("ref_logprobs", batch)

    def _per_sample(self, method: str, batch) -> list[np.ndarray] | None:
        """A per-sample collective of the ranks (values, old_logprobs, ref_logprobs) on their shards,
        attached to the batch under the method's name. The ranks fetch their rows and hand their results
        back by reference: a RolloutBatch here gets them (and they are returned, in batch order); a batch
        held by the rollout manager gets them there, never through this process."""
        batch = as_step_batch(batch)
        tokens = batch.meta.tokens
        shards, num_micro = self._shards(tokens)
        refs = self._get([a.per_sample.remote(method, rows, num_micro) for a, rows in zip(self.actors, batch.rows(shards))],
                         "learner:logprobs", int(tokens.sum()))
        return batch.attach(method, shards, [r[0] for r in refs])

    def train(self, batch, progress: float = 0.0, step: int = 0) -> dict:
        """learner.ppo_epochs passes over the batch (a RolloutBatch, or a step batch held by the rollout
        manager), each one optimizer step per mini-batch of learner.ppo_mini_batch_size samples (0: the
        whole batch). logp_old is fixed before the first update: recomputed by the learners when there are
        several updates, the engines' behaviour log-probs in bypass mode. Stats are per update, averaged
        over the updates (maxima: the max)."""
        lr_, a = self.cfg.learner, self.cfg.algorithm
        batch = as_step_batch(batch)
        n = len(batch.meta)
        chunks = num_mini_batches(n, lr_.ppo_mini_batch_size)
        if a.rollout_correction.bypass:
            batch.alias("old_logprobs", "behaviour_logprobs")
        elif chunks * lr_.ppo_epochs > 1:
            self._per_sample("old_logprobs", batch)
        updates = [self._update(batch, idx, progress)
                   for epoch in range(lr_.ppo_epochs) for idx in mini_batches(n, chunks, (step, epoch))]
        self._get([a.end_step.remote() for a in self.actors], "learner:end_step")  # the lr schedule moves once per RL step
        reduce = reductions(a)
        stats = {k: max(u[k] for u in updates) if reduce.get(k) == "max" else sum(u[k] for u in updates) / len(updates)
                 for k in updates[0]}
        stats["actor/ppo_updates"] = len(updates)
        return stats

    def _update(self, batch, rows: np.ndarray, progress: float) -> dict:
        """One optimizer step on the batch's `rows`: split across ranks by tokens, every rank's stats
        combined by their declared reduction (learner/spec.py)."""
        meta = batch.meta
        anchor = np.zeros(len(rows), bool) if meta.anchor is None else meta.anchor[rows]
        keep = ~anchor if meta.loss_mask is None else meta.loss_mask[rows] & ~anchor
        lengths = meta.policy_tokens[rows]  # tokens the policy sampled: observations are in no denominator
        denom = Denominators(tokens=max(1.0, float(lengths[keep].sum())), sequences=max(1.0, float(keep.sum())),
                             max_len=float(self.cfg.rollout.max_new_tokens),
                             anchor_tokens=max(1.0, float(lengths[anchor].sum())))
        rows = rows[self._with_gradient(meta.moves, rows, keep)]  # after the denominators: they count the whole batch
        tokens = meta.tokens[rows]
        shards, num_micro = self._shards(tokens)
        results = self._get([a.train_step.remote(part, denom, num_micro, progress)
                             for a, part in zip(self.actors, batch.rows([rows[s] for s in shards]))],
                            "learner:train_step", int(tokens.sum()))
        reduce = reductions(self.cfg.algorithm)
        return {k: combine([r.get(k, 0.0) for r in results], how) for k, how in reduce.items()
                if any(k in r for r in results)}

    def _with_gradient(self, moves: np.ndarray | None, rows: np.ndarray, keep: np.ndarray) -> np.ndarray:
        """Which of `rows` move the weights (a bool per row). When the objective is an advantage-weighted
        policy loss alone, a sample out of the loss or with zero advantage everywhere (a group whose rewards
        all agree) contributes exactly 0: it is not computed, and the update is the same (the loss's
        denominators count the whole batch). Early in training on a hard task most groups agree, so this
        skips most of the learner's work. One sample per rank stays: every rank joins the step."""
        if not advantage_only(self.cfg.algorithm) or moves is None:
            return np.ones(len(rows), bool)
        out = keep & moves[rows]
        idle = np.nonzero(~out)[0][:max(0, len(self.actors) - int(out.sum()))]
        out[idle] = True
        return out

    def push_weights(self, engines: list, version: int, on_suspect: Callable[[], int] | None = None) -> SyncResult:
        """The weights into `engines`. on_suspect: called when the push runs past its suspect deadline,
        before the ranks are probed; it returns how many stuck engines it killed (the fleet's kill_stuck:
        the push then completes without them, reporting them failed, under fresh deadlines)."""
        from rlsys.sync.check import ProbeSchedule

        mode = self.cfg.rollout.check_weights
        if getattr(self, "_probes", None) is None or self._probes.mode != mode:
            self._probes = ProbeSchedule(mode)  # rollout.check_weights: which pushes are probed (rlsys/sync/check.py)
        probe = self._probes.due()
        out = self._get([a.push_weights.remote(engines, version, probe) for a in self.actors], "learner:push_weights",
                        len(engines), on_suspect)[0]
        if probe:
            self._probes.record(out.check_s)
        return out

    def save_state(self, path: str) -> None:
        """Sharded model/optimizer state, RNG and lr schedule of every rank into path (resumable)."""
        self._get([a.save_state.remote(path) for a in self.actors], "learner:checkpoint")

    def load_state(self, path: str) -> None:
        self._get([a.load_state.remote(path) for a in self.actors], "learner:checkpoint")

    def save(self, path: str) -> str:
        return self._get([a.save_checkpoint.remote(path) for a in self.actors], "learner:save_hf")[0]

    def shutdown(self) -> None:
        import ray

        ray.get([a.shutdown.remote() for a in self.actors])
