"""The single controller: prepares data and model, places the roles, and runs the RL loop."""

from __future__ import annotations

import json
import os
import time
import traceback
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from rlsys.loop.checkpoint import (PromptCursor, RunState, complete_checkpoints, find_resume, latest_intact, restore, save,
                              truncate_metrics)
from rlsys.config import RLSysConfig, as_dict
from rlsys.runtime.quiet_console import setup_console
from rlsys.data.batch import RolloutBatch
from rlsys.data.dataset import PromptDataset
from rlsys.learner.advantages import compute_advantages
from rlsys.learner.group import LearnerHung, LearnerLost
from rlsys.learner.objective import needs, report, report_correction
from rlsys.learner.role_config import reference_in_learners
from rlsys.loggers.run_logger import RunLogger
from rlsys.loop.metrics import StepTimer, step_metrics
from rlsys.loop.pipeline import AnchorPool, catch_up, sample_step, sync_weights, with_anchors
from rlsys.loop.prepare import prepare_data_and_model  # noqa: F401  (also imported from here by tests)
from rlsys.loop.roles import Roles, shutdown_roles, start_roles
from rlsys.loop.batches import Rollouts
from rlsys.runtime.cluster import stop_ray
from rlsys.runtime.signals import Terminated, raise_if_terminated, signals_kill
from rlsys.runtime.watchdog import Watchdog
from rlsys.seeds import step_seed
from rlsys.verify.pool import require_scored


def evaluate(cfg: RLSysConfig, roles: Roles, data: PromptDataset, n: int, seed: int) -> dict:
    """Held-out pass@1 (the solved fraction) and mean reward of n samples per prompt, sampled as `rlsys
    eval` samples (eval.temperature, eval.top_p; same seeds every call, so before and after compare),
    with each problem's solved count for a paired interval on the gain, and the fraction of samples
    with a final answer the verifier could read (a format-only gain shows there)."""
    from rlsys.eval.run import problem_counts

    e, t0 = cfg.eval, time.perf_counter()
    batch = roles.verifiers.score(roles.fleet.generate(data, np.arange(len(data)), seed=seed, n=n,
                                                       temperature=e.temperature, top_p=e.top_p,
                                                       catch_up=catch_up(cfg, roles)))
    require_scored(batch, "held-out reward")
    answered = [d.parsed is not None for d in batch.verifier_details]
    return {"accuracy": float(batch.correct.mean()), "reward_mean": float(batch.reward.mean()),
            "answered": float(np.mean(answered)), "samples": len(batch), "n": n, "temperature": e.temperature,
            "solved": problem_counts(batch)["c"].tolist(), "seconds": time.perf_counter() - t0}


def pass1_gain(before: dict, after: dict) -> tuple[float, float, float]:
    """Held-out pass@1 gain and its 95% paired-bootstrap interval over the problems."""
    from rlsys.eval.passk import paired_bootstrap

    b = np.asarray(before["solved"], np.float64)[:, None] / before["n"]
    a = np.asarray(after["solved"], np.float64)[:, None] / after["n"]
    lo, hi = paired_bootstrap(a, b)[:, 0]
    return float((a - b).mean()), float(lo), float(hi)


def held_out_pass_at_k(cfg: RLSysConfig, roles: Roles, held_out: PromptDataset) -> dict:
    """pass@k (k = 1, 2, ..., eval.n) of the current policy on the held-out set, as metrics."""
    from rlsys.eval.passk import ks_up_to
    from rlsys.eval.run import curves, sample_counts

    t0 = time.perf_counter()
    counts = sample_counts(cfg, roles.fleet, roles.verifiers, held_out, cfg.trainer.seed, catch_up(cfg, roles))
    overall = curves(counts, ks_up_to(cfg.eval.n))
    return {**{f"val/pass@{k}": v for k, v in overall["overall"].items()}, "timing_s/testing": time.perf_counter() - t0}


def rl_step(cfg: RLSysConfig, roles: Roles, rollouts: Rollouts, step: int, version: int,
            anchors: AnchorPool | None = None):
    """One RL step, straight through: the step's batch (generated now, streaming each finished group into
    verify and reference; or up to trainer.max_staleness steps ahead) -> advantages -> train -> sync."""
    a, timer = cfg.algorithm, StepTimer()
    batch, extra = rollouts.take(step, version, timer)  # no sample more than max_staleness versions old
    if cfg.cluster.colocate:  # the learners get the GPU memory while they train
        roles.fleet.sleep()
    if reference_in_learners(cfg):  # the learner ranks hold the reference, sharded
        with timer("reference"):
            batch.ref_logprobs = roles.learners.reference_logprobs(batch)
    with timer("train"):
        if a.critic.enabled:
            batch.values = roles.learners.values(batch)
        batch.advantages, batch.loss_mask = compute_advantages(batch, a, cfg.rollout.max_new_tokens)
        learn = batch if anchors is None else with_anchors(batch, anchors.next(a.divergence.anchor_samples))
        stats = roles.learners.train(learn, progress=(step - 1) / max(1, cfg.trainer.steps - 1), step=step)
    if cfg.cluster.colocate:
        roles.fleet.wake()
    with timer("sync"):
        sync = rollouts.sync(version + 1)  # the controller moves the weights, between the fleet's rounds
    m = step_metrics(step, version + 1, batch, stats, sync, timer)
    m.update(extra)
    m["rollout/engine_restarts"] = roles.fleet.restarts  # so far in the run
    m["perf/rollout_max_memory_gb"] = roles.fleet.peak_memory_gb()  # the largest engine, its vLLM processes included
    if cfg.rollout.speculative != "none":  # acceptance of this step's drafts
        m.update(roles.fleet.spec_metrics())
    m.update(report(stats, a))  # every declared stat of the objective's active terms
    m.update(report_correction(stats))
    m["actor/ppo_updates"] = stats["actor/ppo_updates"]
    m.update(roles.faults.take())  # actor deaths survived and groups lost this step (rlsys/runtime/faults.py)
    return batch, m


def run(cfg: RLSysConfig, roles: Roles, train_data: PromptDataset, held_out: PromptDataset | None,
        log=print, base_model: str = "", resume_from: Path | None = None, progress: dict | None = None) -> dict:
    """The RL phase (run_from), surviving up to trainer.max_restarts learner rank deaths: the group is
    rebuilt and the run goes on from its last checkpoint (from the start if it has none yet)."""
    for restart in range(1, cfg.trainer.max_restarts + 2):
        try:
            return run_from(cfg, roles, train_data, held_out, log, base_model, resume_from, progress)
        except LearnerLost as err:
            if restart > cfg.trainer.max_restarts:
                raise
            resume_from = latest_intact(complete_checkpoints(cfg.run_dir), log) or resume_from
            log(f"{err}: rebuilding the learners (restart {restart} of trainer.max_restarts="
                f"{cfg.trainer.max_restarts}) and going on from {resume_from or 'step 0 (no checkpoint yet)'}")
            roles.learners.rebuild()
            roles.faults.add("faults/learner_restarts")  # reported by the next step that finishes
            roles.faults.add("faults/hangs_learner", isinstance(err, LearnerHung))
            if resume_from is None:  # the engines serve weights the new learners never had
                sync_weights(roles, 0)
                truncate_metrics(Path(cfg.run_dir), 0)


def run_from(cfg: RLSysConfig, roles: Roles, train_data: PromptDataset, held_out: PromptDataset | None,
             log=print, base_model: str = "", resume_from: Path | None = None, progress: dict | None = None) -> dict:
    """The RL phase on running roles: held-out reward, trainer.steps steps (from a checkpoint's step
    when resuming, checkpointing every trainer.save_every), held-out reward. progress: kept at the
    last finished step (what an interrupted run reports)."""
    t, run_dir, samples = cfg.trainer, Path(cfg.run_dir), cfg.eval.before_after_samples
    state, anchors = restore(resume_from, cfg, roles, base_model, log) if resume_from else (None, None)
    start, version = (state.step, state.version) if state else (0, 0)
    progress = {} if progress is None else progress
    progress["step"] = start
    if state:
        before = state.held_out_before
    else:
        before = evaluate(cfg, roles, held_out, samples, seed=t.seed) if samples and held_out else None
        if before:
            log(f"held-out before RL: pass@1 {before['accuracy']:.3f}, reward {before['reward_mean']:.3f} "
                f"({before['samples']} samples)")
        elif not samples:
            log("held-out evaluation before and after RL: skipped (eval.before_after_samples=0)")
    if anchors is None and "anchors" in needs(cfg.algorithm):
        anchors = AnchorPool(cfg, roles, train_data)
    prompts = PromptCursor(train_data.batches(t.prompts_per_step, t.seed), skip=state.prompts_drawn if state else 0)
    drawn, t0 = {}, time.perf_counter()  # step -> prompt batches drawn once its round was sampled

    def produce(step: int, timer: StepTimer):
        out = sample_step(cfg, roles, train_data, prompts, seed=step_seed(t.seed, step), timer=timer)
        drawn[step] = prompts.drawn
        return out

    with Rollouts(produce, lambda v: sync_weights(roles, v), t.max_staleness, t.steps, start, version) as rollouts, \
            RunLogger(cfg, train_data.prompts) as metrics, Watchdog(log) as watchdog:  # logger.backends
        for step in range(start + 1, t.steps + 1):
            raise_if_terminated()  # a SIGTERM whose own raise was swallowed ends the run here
            watchdog.step_started(step)  # a step past 3x the median says what it waits on
            batch, m = rl_step(cfg, roles, rollouts, step, version, anchors)
            watchdog.step_ended()
            version = m["training/policy_version"]
            if cfg.eval.every and held_out and step % cfg.eval.every == 0:
                with rollouts.paused():
                    m.update(held_out_pass_at_k(cfg, roles, held_out))
            metrics.log(m, batch)
            progress["step"] = step
            if cfg.logger.log_rollouts:
                _write_rollouts(batch, run_dir / "rollouts" / f"step_{step:06d}.parquet")
            if t.save_every and (step % t.save_every == 0 or step == t.steps):
                save(cfg, roles, RunState(step, version, drawn.pop(step), base_model, before,
                                          anchors.cursor if anchors else 0), anchors)
    after = evaluate(cfg, roles, held_out, samples, seed=t.seed) if samples and held_out else None
    return {"steps": t.steps, "held_out_before": before, "held_out_after": after,
            "train_seconds": time.perf_counter() - t0}


def train(cfg: RLSysConfig, log=print) -> dict:
    import ray

    resume_from = find_resume(cfg, log)  # trainer.resume: none | auto | PATH
    if resume_from is not None and cfg.trainer.resume == "auto":
        cfg.run_dir = str(resume_from.parent.parent)  # continue the run that checkpoint belongs to
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(as_dict(cfg), indent=2))
    setup_console(cfg)  # library warnings and actor logs -> <run>/rlsys.log unless logger.verbose=true
    summary, progress = {"run_dir": str(run_dir), "status": "failed"}, {}
    roles, own_ray = None, not ray.is_initialized()  # a Ray this run starts, it stops
    try:
        train_data, held_out, model_path, tokenizer = prepare_data_and_model(cfg, log)
        log(f"data: {len(train_data)} train prompts ({train_data.path}), {len(held_out)} held-out ({held_out.path})")
        roles = start_roles(cfg, model_path, tokenizer.pad_token_id or 0)
        summary.update(run(cfg, roles, train_data, held_out, log, model_path, resume_from, progress),
                       base_model=model_path)
        if (summary["held_out_before"] or {}).get("solved") and (summary["held_out_after"] or {}).get("solved"):
            summary["pass1_gain"] = dict(zip(("gain", "ci95_low", "ci95_high"),
                                             pass1_gain(summary["held_out_before"], summary["held_out_after"])))
        ckpt = roles.learners.save(str(run_dir / "checkpoint")) if cfg.trainer.save_checkpoint else None
        summary.update(status="ok", checkpoint=ckpt)
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM; the checkpoint is read from disk: it may have come mid-save
        found = complete_checkpoints(run_dir)
        summary.update(status="terminated" if isinstance(e, Terminated) else "interrupted", **progress,
                       last_checkpoint=str(found[-1]) if found else None)
        raise
    except BaseException as e:
        summary["error"] = "".join(traceback.format_exception_only(type(e), e)).strip()
        raise
    finally:
        with signals_kill():
            _write_json(run_dir / "summary.json", summary)
            if roles is not None:
                shutdown_roles(roles)
            if own_ray:
                stop_ray()
        if summary["status"] in ("interrupted", "terminated"):
            log(f"{summary['status']} after step {progress.get('step', 0)}; the same command with trainer.resume=auto goes "
                f"on from {summary['last_checkpoint'] or 'step 0 (no checkpoint yet)'}")
    _print_summary(summary, log)
    return summary


def _write_json(path: Path, data: dict) -> None:
    """Written whole or not at all (the process may be killed meanwhile)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def _write_rollouts(batch: RolloutBatch, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(batch.to_arrow(), path)


def _print_summary(s: dict, log) -> None:
    b, a = s.get("held_out_before") or {}, s.get("held_out_after") or {}
    log("=" * 72)
    if s.get("pass1_gain"):
        gain, lo, hi = s["pass1_gain"].values()
        log(f"held-out pass@1: {b['accuracy']:.3f} before RL -> {a['accuracy']:.3f} after {s['steps']} steps, "
            f"gain {gain:+.3f} (95% CI {lo:+.3f}..{hi:+.3f}; {len(a['solved'])} problems x {a['n']} samples, "
            f"T={a['temperature']})")
        log(f"held-out reward: {b['reward_mean']:.3f} -> {a['reward_mean']:.3f}; samples with a readable answer: "
            f"{b['answered']:.3f} -> {a['answered']:.3f}")
    elif b and a:  # a run resumed from a checkpoint written before per-problem counts were kept
        log(f"held-out reward: {b['reward_mean']:.3f} before RL -> {a['reward_mean']:.3f} after {s['steps']} steps")
    log(f"checkpoint (HF format): {s.get('checkpoint')}")
    log(f"run directory: {s['run_dir']}  (metrics.jsonl, summary.json, rollouts/, rlsys.log)")
