"""The rollout fleet: N RolloutWorker actors; one step's prompt groups stream back as they finish.

Each prompt group (its G samples) is one request on one engine, so the samples share the
prompt's prefix cache; a group goes to the engine with the least outstanding work (estimated
tokens of the groups it still owes). An engine that dies is replaced by a new actor in the same
placement bundle, and the groups it owed go to the others. An engine that is alive but stuck (no
message past its deadline, derived from the group times the fleet has measured) is killed and
handled the same way (`faults/hangs_rollout`).

The fleet never fetches weights: the controller decides when weights move (rlsys/loop/pipeline.py). A
restarted engine that comes up behind the fleet's version is brought level by the `catch_up`
the caller passes to stream/generate/wait_ready (the controller passes a learner push of the
fleet's version; without one, a behind engine is an error that says so).
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import replace
from typing import Callable, Iterator

import numpy as np

from rlsys.config import RolloutConfig
from rlsys.data.batch import RolloutBatch
from rlsys.data.dataset import PromptDataset
from rlsys.errors import engine_died  # noqa: F401  (also imported from here)
from rlsys.rollout.speculative import spec_metrics
from rlsys.rollout.worker import EngineOutput
from rlsys.runtime.deadlines import Deadlines
from rlsys.runtime.faults import FaultLog
from rlsys.runtime.notices import notice
from rlsys.runtime.watchdog import WAITS
from rlsys.seeds import group_seed

# vLLM sleep level while the learners train: 1 moves weights to host memory and drops the KV
# cache (keeps a frozen draft and the model's buffers); 2 would drop weights too.
SLEEP_LEVEL = 1
CatchUp = Callable[[list, int], object]  # (engines, version): push that version's weights into them
# Deadlines (rlsys/runtime/deadlines.py: its floor, factors and start-up limit, times cluster.deadline_scale).
# A streaming call that sends no message for SUSPECT_FACTOR x the slowest group time seen (p99) must
# answer a probe within the floor; it may go HANG_FACTOR x p99 without a message at all (its engine core
# may be stuck while the actor answers). An engine that has not answered yet builds vLLM on its first
# request, so it gets START_S; a short call (a probe, memory figures) gets the floor.


class FleetError(RuntimeError):
    """The fleet cannot answer: engines keep dying, or a restarted engine cannot be brought up."""


class EngineHung(RuntimeError):
    """An engine alive but silent past its deadline: killed, and handled as a death."""


class RolloutFleet:
    def __init__(self, engines: list, rollout: RolloutConfig, make_engine: Callable[[int], object] | None = None,
                 faults: FaultLog | None = None, deadlines: Deadlines | None = None):
        """rollout: sampling defaults and restart budget. make_engine(i) starts a replacement for engine
        i (same placement bundle); without it a dead engine fails the step. deadlines: their scale
        (cluster.deadline_scale; 0 = wait forever) and a fixed rollout deadline (cluster.deadline_s.rollout)."""
        self.engines, self.rollout, self.make_engine = list(engines), rollout, make_engine
        self.faults, self.deadlines = faults or FaultLog(), deadlines or Deadlines()
        self.answered: set[int] = set()  # engines that returned a group since they (re)started
        self.version = 0  # policy version the engines serve
        self.restarts = self.resent = 0  # engines restarted and groups re-sent so far
        self.deaths: list[tuple[set[int], str | None]] = []  # (seeds of the groups it owed, root cause) per death
        self.load = np.zeros(len(engines))  # outstanding estimated tokens per engine
        self.starting: dict = {}  # readiness ref -> index of a restarted engine not yet serving
        self.snapshot: CatchUp | None = None  # re-delivers the served version's weights (async, object_store)
        self.in_flight = False  # weights may change mid-request (trainer.in_flight_updates): versions per token

    # ---- weights: the controller moves them, the fleet says where to and what it serves ---------
    def sync_targets(self) -> list:
        """The engines a weight push must reach now: dead ones are replaced first (a dead engine would
        fail the push half-way, mid-collective on the learners); restarted engines still starting are
        left out (the step does not wait for them) and are caught up when they come up."""
        self._replace_dead()
        return [e for i, e in enumerate(self.engines) if i not in self.starting.values()]

    def serve(self, version: int, snapshot: CatchUp | None = None) -> None:
        """The controller pushed `version` to sync_targets(): route requests as that version.
        snapshot(engines, version) re-delivers exactly that version to engines restarted later; without
        one, the caller's catch_up does (in sync mode the learners hold the fleet's version)."""
        self.version, self.snapshot = version, snapshot

    @contextmanager
    def paused(self, engines: list):
        """With in-flight updates, `engines` pause their running requests (kept, to go on with the new
        weights) for the duration; otherwise nothing (no request runs during a push)."""
        import ray

        if not (self.in_flight and engines):
            yield
            return
        ray.get([e.pause_generation.remote() for e in engines])
        try:
            yield
        finally:  # a failed push must not leave engines paused; a dead one is replaced by the next sync
            ray.wait([e.resume_generation.remote() for e in engines], num_returns=len(engines),
                     timeout=self.deadlines.probe_s if self.deadlines.scale else None)

    def kill_stuck(self) -> int:
        """Kill the serving engines that do not answer a short call (one stopped mid-push fails that push,
        and lost_in_push restarts it; otherwise the next sync_targets() does). How many it killed."""
        _, hung, _ = self._call_serving("get_version")
        for i in hung:
            self._kill_hung(i, "a probe during a weight push")
        return len(hung)

    def lost_in_push(self, engines: list) -> None:
        """Engines that died during a weight push: restarted, and given the served version when up."""
        for engine in engines:
            self._restart(self.engines.index(engine), RuntimeError("engine died during a weight push"))

    # ---- colocation and engine statistics ------------------------------------------------------
    def sleep(self) -> None:
        """Free the engines' GPU memory before the learners train (weights to host, KV cache dropped)."""
        import ray

        ray.get([e.sleep.remote(SLEEP_LEVEL) for e in self.engines])

    def wake(self) -> None:
        """Weights and KV cache back on the GPU, before the sync writes the new weights into them."""
        import ray

        ray.get([e.wake.remote() for e in self.engines])

    def spec_metrics(self) -> dict[str, float]:
        """Speculative-decoding acceptance since the last call, over the fleet (the engines that answered)."""
        return spec_metrics(self._ask_each("spec_counters_delta"))

    def peak_memory_gb(self) -> float:
        """The largest engine's peak memory since the last call (GB), of the engines that answered."""
        return max(self._ask_each("peak_memory_gb"), default=0.0)

    def _ask_each(self, method: str) -> list:
        """The answers of the serving engines to a short call. A hung one is killed, and a dead one left:
        the next sync_targets() replaces both."""
        answers, hung, _dead = self._call_serving(method)
        for i in hung:
            self._kill_hung(i, method)
        return list(answers.values())

    def _call_serving(self, method: str) -> tuple[dict, list[int], dict]:
        """A short call to every serving engine, waited for at most the short deadline: (answers by
        engine, engines silent past it, engines that died: their errors)."""
        import ray

        refs = {getattr(e, method).remote(): i for i, e in enumerate(self.engines) if i not in self.starting.values()}
        if not refs:
            return {}, [], {}
        limit = self._deadline(None)[1]
        ready, late = ray.wait(list(refs), num_returns=len(refs), timeout=None if math.isinf(limit) else limit)
        answers, dead = {}, {}
        for ref in ready:
            try:
                answers[refs[ref]] = ray.get(ref)
            except Exception as err:
                if not engine_died(err):
                    raise
                dead[refs[ref]] = err
        return answers, [refs[ref] for ref in late], dead

    # ---- deadlines -------------------------------------------------------------------------------
    def _deadline(self, e: int | None) -> tuple[float, float]:
        """(suspect, hung): seconds engine e's streaming call may go without a message before it must
        answer a probe, and at all (e None: a short call)."""
        if e is None:
            return self.deadlines.probe_s, self.deadlines.probe_s
        # group times are recorded as kind "rollout"; "rollout:start" is never measured: the start-up limit
        return self.deadlines.limits("rollout" if e in self.answered else "rollout:start")

    def _kill_hung(self, e: int, waiting_for: str, deadline: float | None = None) -> EngineHung:
        """Kill engine e, alive but silent past its deadline (default: the short calls'); the caller
        restarts it (or the next sync_targets() does)."""
        import ray

        deadline = self._deadline(None)[1] if deadline is None else deadline
        self.faults.add("faults/hangs_rollout")
        err = EngineHung(f"rollout engine {e} sent nothing for {deadline:.0f} s ({waiting_for}); its deadline "
                         f"(cluster.deadline_scale={self.deadlines.scale}) passed: killed and handled as a death")
        notice(str(err))
        ray.kill(self.engines[e])
        return err

    def wait_ready(self, catch_up: CatchUp | None = None) -> None:
        """Block until every restarted engine is up and serves the fleet's policy version."""
        for ref in list(self.starting):
            self._engine_ready(ref, catch_up)

    # ---- generation ----------------------------------------------------------------------------
    def generate(self, data: PromptDataset, prompt_idx: np.ndarray, seed: int, n: int | None = None,
                 temperature: float | None = None, top_p: float | None = None,
                 catch_up: CatchUp | None = None) -> RolloutBatch:
        """Every group of the prompts, blocking; rows ordered by group then sample."""
        parts = list(self.stream(data, prompt_idx, seed, n, temperature, top_p, catch_up))
        return sort_groups(RolloutBatch.concat(parts))

    def stream(self, data: PromptDataset, prompt_idx: np.ndarray, seed: int, n: int | None = None,
               temperature: float | None = None, top_p: float | None = None,
               catch_up: CatchUp | None = None) -> Iterator[RolloutBatch]:
        """n samples for each prompt, yielded one group at a time in completion order; group_id is
        the prompt's position in prompt_idx. n, temperature and top_p default to the rollout config;
        catch_up(engines, version) brings an engine restarted during the call to the fleet's version.
        Each engine gets one streaming call with all its groups, so it batches them continuously."""
        import ray

        r = self.rollout
        n = n or r.n
        params = (n, r.temperature if temperature is None else temperature, r.top_p if top_p is None else top_p,
                  r.max_new_tokens)
        cost = [n * (len(data.prompt_token_ids[i]) + r.max_new_tokens) for i in prompt_idx]
        seed_of = lambda g: group_seed(seed, int(prompt_idx[g]))  # noqa: E731  (also names the group)
        # a group of a row with an environment carries it (its samples are episodes); a one-turn group does not
        episode_of = lambda g: [e] if (e := data.episode(int(prompt_idx[g]))) else []  # noqa: E731
        calls: dict = {}  # streaming call -> (engine index, group positions it still owes)
        heard: dict = {}  # streaming call -> when it was sent or last sent a message (its deadline runs from there)
        alive: set = set()  # streaming calls whose engine answered a probe since their last message
        waiting: list[int] = []  # groups with no live engine to take them yet

        def submit(groups: list[int]) -> None:
            """Each group to the engine owing the fewest estimated tokens; one call per engine."""
            live = [i for i in range(len(self.engines)) if i not in self.starting.values()]
            if not live:
                waiting.extend(groups)
                return
            per_engine: dict[int, list[int]] = {}
            for g in groups:
                e = min(live, key=lambda i: self.load[i])
                per_engine.setdefault(e, []).append(g)
                self.load[e] += cost[g]
            for e, gs in per_engine.items():  # the per-prompt seed makes a group the same on any engine
                todo = [(g, data.prompt_token_ids[int(prompt_idx[g])], seed_of(g), *episode_of(g)) for g in gs]
                call = self.engines[e].generate_groups.options(num_returns="streaming").remote(todo, *params)
                calls[call], heard[call] = (e, set(gs)), time.monotonic()

        def due(c) -> float:  # when call c is next checked: its suspect deadline, then (alive) its hung one
            return heard[c] + self._deadline(calls[c][0])[1 if c in alive else 0]

        def owed() -> str:  # for the watchdog
            now = time.monotonic()
            return ", ".join(f"engine {e} owes {len(gs)} groups, last message {now - heard[c]:.0f} s ago"
                             for c, (e, gs) in list(calls.items())) or f"{len(waiting)} groups wait for an engine"

        submit(list(range(len(prompt_idx))))
        try:
            with WAITS.waiting("rollout", owed):
                while calls or waiting:
                    waitables = list(calls) + list(self.starting)
                    wait = min((due(c) for c in calls), default=math.inf) - time.monotonic()
                    ray.wait(waitables, num_returns=1, timeout=None if math.isinf(wait) else max(0.0, wait))
                    ready, _ = ray.wait(waitables, num_returns=len(waitables), timeout=0)
                    for w in ready:
                        if w in self.starting:
                            self._engine_ready(w, catch_up)
                            again, waiting[:] = waiting[:], []
                            submit(again)
                        elif w in calls:
                            heard[w] = time.monotonic()
                            alive.discard(w)
                            yield from self._receive(w, calls, submit, cost, data, prompt_idx, seed_of)
                    now = time.monotonic()
                    for e in {calls[c][0] for c in calls if now >= due(c)}:
                        mine = [c for c in calls if calls[c][0] == e]
                        silent = now - max(heard[c] for c in mine)
                        if any(c in alive for c in mine) or not self._answers_probe(e):
                            self._hung(e, calls, submit, seed_of, silent)
                        else:
                            alive.update(mine)  # slow, not stopped: checked again at its hung deadline
        finally:  # the consumer stopped early (or failed): drop what is still running
            for call, (e, owed) in calls.items():
                self.load[e] -= sum(cost[g] for g in owed)
                ray.cancel(call)

    def _receive(self, call, calls: dict, submit, cost, data, prompt_idx, seed_of) -> Iterator[RolloutBatch]:
        """The next message of one engine's call: finished groups, the end, or the engine's death."""
        import ray

        e, owed = calls[call]
        try:
            items = ray.get(next(call))
        except StopIteration:
            del calls[call]
            return
        except Exception as err:
            if not engine_died(err):
                raise
            self._resend(e, err, calls, submit, seed_of)
            return
        for g, out in items:
            owed.discard(g)
            self.load[e] -= cost[g]
            self.version = max(self.version, out.policy_version)
            self.answered.add(e)
        if items:  # the group times the streaming deadline derives from
            self.deadlines.record_many("rollout", [(float(out.seconds), 1.0) for _, out in items])
        for g, out in items:
            yield group_batch(data, int(prompt_idx[g]), g, out, self.in_flight or data.env is not None)

    def _answers_probe(self, e: int) -> bool:
        """Engine e's actor answers a short call (a dead one counts as answering: its call reports the death)."""
        import ray
        from ray.exceptions import GetTimeoutError

        limit = self._deadline(None)[0]
        try:
            ray.get(self.engines[e].get_version.remote(), timeout=None if math.isinf(limit) else limit)
        except GetTimeoutError:
            return False
        except Exception as err:
            if not engine_died(err):
                raise
        return True

    def _hung(self, e: int, calls: dict, submit, seed_of, silent: float) -> None:
        """Engine e's call sent nothing past its deadline: killed, restarted, its groups re-sent."""
        owed = sum(len(gs) for i, gs in calls.values() if i == e)
        self._resend(e, self._kill_hung(e, f"{owed} groups owed", silent), calls, submit, seed_of)

    def _resend(self, e: int, err: BaseException, calls: dict, submit, seed_of) -> None:
        """Engine e is gone: restart it and send the groups it owed to the others."""
        lost = [g for c in [c for c, (i, _) in calls.items() if i == e] for g in calls.pop(c)[1]]
        self._restart(e, err, {seed_of(g) for g in lost})
        self.resent += len(lost)
        submit(lost)

    # ---- failures ------------------------------------------------------------------------------
    def _restart(self, e: int, err: BaseException, groups: set[int] = frozenset()) -> None:
        """Replace engine e. groups: the (seeds of the) groups it owed. A death with the same root
        cause as an earlier one on some of the same groups is deterministic: restarting cannot help."""
        import ray

        self.restarts += 1
        cause = None if isinstance(err, EngineHung) else self._root_cause(e)  # a killed process logged nothing
        said = f": {cause}" if cause else ""
        if cause and any(c == cause and groups & gs for gs, c in self.deaths):
            msg = (f"rollout engine {e} died again with the same error on groups an earlier death also held, so "
                   f"restarting will not help{said}. The engine log (above) has the full trace.")
            notice(msg)
            raise FleetError(msg) from err
        self.deaths.append((set(groups), cause))
        if self.make_engine is None or self.restarts > self.rollout.max_engine_restarts:
            why = ("the fleet cannot start engines" if self.make_engine is None else
                   f"rollout.max_engine_restarts={self.rollout.max_engine_restarts} restarts are used up")
            raise FleetError(f"rollout engine {e} died ({type(err).__name__}{said}) and {why}") from err
        notice(f"rollout engine {e} died ({type(err).__name__}{said}); restarting it, its groups go to the others")
        ray.kill(self.engines[e])  # if only its engine core died, free the bundle for the new actor
        self.engines[e] = self.make_engine(e)
        self.load[e] = 0
        self.answered.discard(e)  # the new engine builds vLLM on its first request: start-up deadline
        self.starting[self.engines[e].get_version.remote()] = e

    def _root_cause(self, e: int) -> str | None:
        """What the engine's processes logged when they died; None when the actor itself is gone."""
        import ray

        try:
            return ray.get(self.engines[e].root_cause.remote(), timeout=30)
        except Exception:  # killed actor, lost node: nothing to read, a transient death
            return None

    def _replace_dead(self) -> None:
        """Restart engines that died since they last answered (e.g. while the learners trained), or hung."""
        _, hung, dead = self._call_serving("get_version")
        for i in hung:
            self._restart(i, self._kill_hung(i, "a liveness probe"))
        for i, err in dead.items():
            self._restart(i, err)

    def _engine_ready(self, ref, catch_up: CatchUp | None) -> None:
        """A restarted engine is up: bring it to the fleet's policy version, then route to it."""
        import ray

        e = self.starting.pop(ref)
        try:
            version = ray.get(ref)
        except Exception as err:
            raise FleetError(f"restarted rollout engine {e} failed to start") from err
        catch_up = self.snapshot or catch_up  # the served version itself, not whatever the learners hold now
        if version != self.version:
            if catch_up is None:
                raise FleetError(f"restarted rollout engine {e} serves version {version}, the fleet {self.version}, "
                                 f"and nothing can bring it level: no catch_up was passed, and no snapshot of the served version "
                                 f"was kept (in async mode only rollout.sync_backend=object_store keeps one)")
            catch_up([self.engines[e]], self.version)


def group_batch(data: PromptDataset, pid: int, g: int, out: EngineOutput, per_token: bool = False) -> RolloutBatch:
    """One group's samples. per_token (weights changed in flight, or episodes): each token's version is kept,
    and a sample's policy_version is its oldest sampled token's (what staleness is bounded by). When the data
    has episodes, every group carries the episode columns (a one-turn group: all tokens sampled, one turn)."""
    n = len(out.response_token_ids)
    versions = out.token_versions if per_token and out.token_versions else None
    masks = out.token_mask or [np.ones(len(r), np.int8) for r in out.response_token_ids]
    oldest = [int(v[m > 0].min()) if m.any() else out.policy_version for v, m in zip(versions, masks)] if versions \
        else [out.policy_version] * n
    episodes = data.env is not None
    if episodes and out.episodes is None:  # a one-turn row among episodes
        out = replace(out, token_mask=masks, turn_index=[np.zeros(len(r), np.int16) for r in out.response_token_ids],
                      episodes=[{"status": "completed" if f == "stop" else "truncated", "turns": 1, "tool_calls": 0}
                                for f in out.finish_reason])
    return RolloutBatch(token_mask=out.token_mask if episodes else None, turn_index=out.turn_index if episodes else None,
                        episode=out.episodes if episodes else None,
        prompt_id=np.full(n, pid, np.int64), group_id=np.full(n, g, np.int64),
        sample_index=np.arange(n, dtype=np.int64),
        prompt_token_ids=[data.prompt_token_ids[pid] if p is None else p for p in out.prompt_token_ids or [None] * n],
        response_token_ids=out.response_token_ids, behaviour_logprobs=out.behaviour_logprobs,
        policy_version=np.asarray(oldest, dtype=np.int64), finish_reason=out.finish_reason,
        response_text=out.response_text, ground_truth=[data.ground_truth[pid]] * n,
        data_source=[data.data_source[pid]] * n,
        extra_info=None if data.extra_info is None else [data.extra_info[pid]] * n, token_versions=versions)


def sort_groups(batch: RolloutBatch) -> RolloutBatch:
    """Rows by (group, sample): the batch does not depend on the order groups finished in."""
    return batch.select(np.lexsort((batch.sample_index, batch.group_id)))
