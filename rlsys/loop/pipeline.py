"""The step's pipeline, run by the controller across the roles: stream the groups out of the fleet
into the verifiers and the reference (overlapped), DAPO's dynamic sampling, DPH-RL's anchor
samples drawn once from the initial policy, and the weight sync learners -> fleet.

The controller decides when weights move (sync_weights, once per step) and tells the fleet which
version it serves; an engine restarted mid-call is caught up through the explicit `catch_up`
passed to the fleet's calls here (a push of the fleet's version from the learners)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from functools import partial
from typing import Iterator

import numpy as np

from rlsys.data.batch import RolloutBatch
from rlsys.data.dataset import PromptDataset
from rlsys.runtime.faults import ActorLost, call_with_retries
from rlsys.learner.microbatch import sample_tokens
from rlsys.learner.objective import needs
from rlsys.learner.role_config import reference_on_server
from rlsys.rollout.fleet import sort_groups
from rlsys.seeds import anchor_seed, round_seed
from rlsys.sync.result import SyncResult
from rlsys.verify.pool import require_scored


class SamplingError(RuntimeError):
    """Dynamic sampling could not fill the batch; the message says how far it got and what to change."""


def sync_weights(roles, version: int) -> SyncResult:
    """Learners push `version` into every engine the fleet names; the fleet then serves it. Engines that
    died during the push are restarted and get this version (from the kept snapshot, or the learners)."""
    from rlsys.sync.object_store import load_snapshot

    targets = roles.fleet.sync_targets()
    with roles.fleet.paused(targets):  # trainer.in_flight_updates: running requests wait between two steps
        stats = roles.learners.push_weights(targets, version, on_suspect=roles.fleet.kill_stuck)
    buckets, stats.snapshot = stats.snapshot, None  # the fleet keeps the snapshot, the step's stats do not
    roles.fleet.serve(version, None if buckets is None else partial(load_snapshot, buckets))
    roles.fleet.lost_in_push([targets[i] for i in stats.failed])
    return stats


def catch_up(cfg, roles):
    """For the fleet's calls: bring engines restarted mid-call to the version the fleet serves. The
    learners hold that version only in sync mode; in async mode the fleet's snapshot of it does."""
    return roles.learners.push_weights if cfg.trainer.max_staleness == 0 else None


def informative(batch: RolloutBatch) -> np.ndarray:
    """Per sample: its group has 0 < #correct < G (a group where all agree has zero advantage)."""
    ok = np.zeros(len(batch), bool)
    correct = batch.correct
    for g in np.unique(batch.group_id):
        idx = batch.group_id == g
        ok[idx] = 0 < correct[idx].sum() < idx.sum()
    return ok


def sample_step(cfg, roles, data: PromptDataset, prompts: Iterator[np.ndarray], seed: int, timer):
    """Generate, verify and score with the reference one step's groups, streamed (see stream_round).
    Groups whose verifier or reference actor was lost leave the batch (counted in roles.faults).
    With algorithm.sampling.dynamic, keep only the informative groups and draw more prompts until
    trainer.prompts_per_step groups are kept."""
    a, need = cfg.algorithm, cfg.trainer.prompts_per_step
    kept: list[RolloutBatch] = []
    num_kept = tried = 0
    rounds = a.sampling.max_rounds if a.sampling.dynamic else 1
    keep = (lambda g: bool(informative(g).any())) if a.sampling.dynamic else None
    for rnd in range(rounds):
        idx = next(prompts)
        batch = stream_round(cfg, roles, data, idx, round_seed(seed, rnd), timer, keep)
        if batch is not None:
            batch.group_id = batch.group_id + tried  # unique across rounds
        tried += len(idx)
        if not a.sampling.dynamic:
            if batch is None:
                raise SamplingError(f"every group of this step was lost to verifier or reference actor faults "
                                    f"({roles.faults.take()}); nothing real to train on")
            return batch, {}
        if batch is not None:
            kept.append(batch)
            num_kept += len(np.unique(batch.group_id))
        if num_kept >= need:
            batch = RolloutBatch.concat(kept)
            first = np.unique(batch.group_id)[:need]
            batch = batch.select(np.nonzero(np.isin(batch.group_id, first))[0])
            # DAPO dynamic sampling: informative groups have some but not all samples correct
            return batch, {"rollout/sampling_rounds": rnd + 1, "rollout/prompts_sampled": tried,
                           "rollout/informative_frac": num_kept / tried}
    raise SamplingError(
        f"dynamic sampling kept {num_kept} of trainer.prompts_per_step={need} groups after "
        f"algorithm.sampling.max_rounds={rounds} rounds ({tried} prompts x rollout.n={cfg.rollout.n}): only groups "
        f"with some but not all samples correct carry signal, and too few did. The task is too easy or too hard "
        f"for this policy: raise algorithm.sampling.max_rounds or rollout.n, change the data, or turn "
        f"algorithm.sampling.dynamic off.")


def stream_round(cfg, roles, data: PromptDataset, idx: np.ndarray, seed: int, timer, keep=None) -> RolloutBatch | None:
    """One round of groups, overlapped with generation: groups are verified as soon as the fleet
    returns them, and kept groups go to the reference (and teacher) as soon as they are scored,
    while the rest still generates.
    Groups that arrive while the verifiers (or the reference) are busy are sent together next time,
    so per-call overhead does not grow with the number of groups. Returns the kept groups with
    rewards and reference log-probs, rows ordered by group (arrival order does not matter), or None."""
    def verify(groups: list[RolloutBatch]) -> list[RolloutBatch]:
        with timer("verify"):
            scored = roles.verifiers.score(RolloutBatch.concat(groups), data)
        groups = [scored.select(np.nonzero(scored.group_id == g)[0]) for g in np.unique(scored.group_id)]
        real = [g for g in groups if np.isfinite(g.reward).all()]  # a group without a real reward leaves the batch
        roles.faults.add("faults/groups_lost_verifier", len(groups) - len(real))
        return real

    def reference(groups: list[RolloutBatch]) -> RolloutBatch | None:
        chunk = RolloutBatch.concat(groups)
        if not (use_reference or use_teacher):
            return chunk  # no term of the objective reads reference log-probs
        alone = generated.is_set()  # generation over: this call may take the node's idle cores
        with timer("reference"):
            try:
                if use_reference:
                    chunk.ref_logprobs = server_logprobs(roles, "reference", chunk, alone)
                if use_teacher:
                    chunk.teacher_logprobs = server_logprobs(roles, "teacher", chunk, alone)
            except ActorLost:  # the server died on every attempt: these groups leave the batch
                roles.faults.add("faults/groups_lost_reference", len(groups))
                return None
        return chunk

    # with cluster.reference_with_learners the learners compute reference log-probs later (controller.rl_step)
    use_reference, use_teacher = reference_on_server(cfg), "teacher" in needs(cfg.algorithm)
    if use_reference and roles.reference is None:
        raise ValueError("this objective reads reference log-probs but the roles were started without a reference "
                         "server (start them with a config that needs one, e.g. algorithm.kl.metric=true)")
    arrived, verifying, scored, chunks = [], [], [], []
    max_verifying, lock, generated = cfg.cluster.num_verifiers, threading.RLock(), threading.Event()

    def advance(final: bool = False) -> None:
        """Move groups along: arrived -> verifying -> scored -> reference chunks. Runs on each
        arrival and, from the pools' threads, whenever a verification or reference call ends."""
        nonlocal arrived, scored
        if final:  # wait outside the lock: the pools' callbacks need it to finish
            for f in list(verifying):
                f.exception()
        with lock:
            for f in [f for f in verifying if f.done()]:
                verifying.remove(f)
                scored += [g for g in f.result() if keep is None or keep(g)]
            # Each list is handed over before its callback is added: a call that has already
            # finished runs the callback (this function, re-entered) at once, and must find the
            # list empty, or it would send the same groups twice.
            if arrived and (final or len(verifying) < max_verifying):
                groups, arrived = arrived, []
                verifying.append(pool.submit(verify, groups))
                verifying[-1].add_done_callback(lambda _: advance())
            ref_idle = not chunks or chunks[-1].done()
            if scored and (final or (ref_idle and sum(map(len, scored)) >= cfg.learner.micro_batch_size)):
                groups, scored = scored, []
                chunks.append(ref_pool.submit(reference, groups))
                chunks[-1].add_done_callback(lambda _: advance())

    with ThreadPoolExecutor(max_verifying) as pool, ThreadPoolExecutor(1) as ref_pool:
        with timer("generate"), roles.verifiers.generating():  # colocated judges wait (and sleep on GPU)
            for group in roles.fleet.stream(data, idx, seed=seed, catch_up=catch_up(cfg, roles)):
                with lock:
                    arrived.append(group)
                advance()
        generated.set()
        advance(final=True)  # sends the last arrivals to the verifiers
        advance(final=True)  # waits for them and sends the rest to the reference
    parts = [p for p in (f.result() for f in chunks) if p is not None]  # the pools have finished every call
    return sort_groups(RolloutBatch.concat(parts)) if parts else None


def server_logprobs(roles, role: str, chunk: RolloutBatch, alone: bool = False) -> list[np.ndarray]:
    """Per-token log-probs from the reference or teacher server, re-sent if it died mid-call (it is
    stateless and Ray restarts it) or hung past its deadline (killed; the deadline scales with the tokens);
    ActorLost if every attempt failed. alone: generation is over, the server may use the node's idle cores."""
    server, path = getattr(roles, role), roles.server_paths.get(role)
    tokens = int(sample_tokens(chunk).sum())
    return call_with_retries(lambda _: (server, server.logprobs.remote(chunk.prompt_token_ids,
                                                                      chunk.response_token_ids, alone, path)),
                             role, roles.faults, deadlines=getattr(roles, "deadlines", None), units=tokens)


class AnchorPool:
    """DPH-RL: samples drawn once from the initial policy (engines at version 0), stored with
    their pi_0 log-probs (the behaviour log-probs), and cycled through a slice per step."""

    def __init__(self, cfg, roles, data: PromptDataset):
        a, n = cfg.algorithm, cfg.rollout.n
        num_prompts = min(len(data), -(-a.divergence.anchor_pool // n))
        idx = np.random.default_rng(anchor_seed(cfg.trainer.seed)).permutation(len(data))[:num_prompts]
        batch = roles.verifiers.score(roles.fleet.generate(data, idx, seed=anchor_seed(cfg.trainer.seed),
                                                           catch_up=catch_up(cfg, roles)), data)
        batch = require_scored(batch, "DPH-RL anchor pool")
        self.pool = batch.select(np.arange(min(a.divergence.anchor_pool, len(batch))))
        self.cursor = 0

    def next(self, k: int) -> RolloutBatch:
        idx = (self.cursor + np.arange(k)) % len(self.pool)
        self.cursor = int(idx[-1] + 1) % len(self.pool)
        return self.pool.select(idx)


def with_anchors(batch: RolloutBatch, anchors: RolloutBatch) -> RolloutBatch:
    """The RL batch plus anchor samples that enter only the divergence term: no policy loss
    (loss_mask off), zero advantages; per-token columns the RL batch has are filled for them."""
    anchors = anchors.select(np.arange(len(anchors)))
    zeros = [np.zeros(len(r), np.float32) for r in anchors.response_token_ids]
    for f in fields(RolloutBatch):
        mine, theirs = getattr(batch, f.name), getattr(anchors, f.name)
        if mine is None:
            setattr(anchors, f.name, None)
        elif theirs is None:
            setattr(anchors, f.name, [z.copy() for z in zeros])
    anchors.ref_logprobs = anchors.behaviour_logprobs  # only read for the KL metric, masked off for anchors
    anchors.loss_mask = np.zeros(len(anchors), bool)
    anchors.anchor = np.ones(len(anchors), bool)
    anchors.group_id = anchors.group_id + int(batch.group_id.max()) + 1
    batch = batch.select(np.arange(len(batch)))
    batch.loss_mask = np.ones(len(batch), bool) if batch.loss_mask is None else batch.loss_mask
    batch.anchor = np.zeros(len(batch), bool)
    return RolloutBatch.concat([batch, anchors])
