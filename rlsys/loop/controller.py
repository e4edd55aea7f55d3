"""The single controller: prepares data and model, places the roles, and runs the RL loop."""

from __future__ import annotations

import json
import os
import time
import traceback
from pathlib import Path

import numpy as np

from rlsys.loop.checkpoint import (RunState, complete_checkpoints, find_resume, latest_intact, restore, save,
                              truncate_metrics)
from rlsys.config import RLSysConfig, as_dict
from rlsys.runtime.quiet_console import setup_console
from rlsys.data.dataset import PromptDataset
from rlsys.learner.group import LearnerHung, LearnerLost
from rlsys.learner.objective import report, report_correction
from rlsys.learner.role_config import reference_in_learners
from rlsys.loggers.run_logger import RunLogger
from rlsys.loop.metrics import StepTimer, step_metrics
from rlsys.loop.prepare import prepare_data_and_model  # noqa: F401  (also imported from here by tests)
from rlsys.loop.roles import Roles, shutdown_roles, start_roles
from rlsys.rollout.manager import Rollout, RolloutLost, end_run, start_rollout
from rlsys.runtime.cluster import stop_ray
from rlsys.runtime.signals import Terminated, raise_if_terminated, signals_kill
from rlsys.runtime.watchdog import Watchdog


def pass1_gain(before: dict, after: dict) -> tuple[float, float, float]:
    """Held-out pass@1 gain and its 95% paired-bootstrap interval over the problems."""
    from rlsys.eval.passk import paired_bootstrap

    b = np.asarray(before["solved"], np.float64)[:, None] / before["n"]
    a = np.asarray(after["solved"], np.float64)[:, None] / after["n"]
    lo, hi = paired_bootstrap(a, b)[:, 0]
    return float((a - b).mean()), float(lo), float(hi)


def rl_step(cfg: RLSysConfig, roles: Roles, rollout: Rollout, step: int, version: int):
    """One RL step, straight through: the step's batch (generated now, streaming each finished group into
    verify and reference; or up to trainer.max_staleness steps ahead) -> advantages -> train -> sync.
    The batch stays with the rollout manager: this process moves metadata and references only."""
    a, timer = cfg.algorithm, StepTimer()
    batch, extra = rollout.take(step, version, timer)  # no sample more than max_staleness versions old
    if cfg.cluster.colocate:  # the learners get the GPU memory while they train
        rollout.sleep()
    if reference_in_learners(cfg):  # the learner ranks hold the reference, sharded
        with timer("reference"):
            roles.learners.reference_logprobs(batch)
    with timer("train"):
        if a.critic.enabled:
            roles.learners.values(batch)
        batch.advantages()  # computed where the batch is (DPH-RL's anchor samples appended there)
        stats = roles.learners.train(batch, progress=(step - 1) / max(1, cfg.trainer.steps - 1), step=step)
    if cfg.cluster.colocate:
        rollout.wake()
    with timer("sync"):
        sync = rollout.sync(version + 1)  # the controller moves the weights, between the fleet's rounds
    m = step_metrics(step, version + 1, batch.meta, stats, sync, timer)
    m.update(extra)
    m.update(rollout.fleet_metrics())  # engine restarts, engine memory, draft acceptance
    m.update(report(stats, a))  # every declared stat of the objective's active terms
    m.update(report_correction(stats))
    m["actor/ppo_updates"] = stats["actor/ppo_updates"]
    m.update(_summed(roles.faults.take(), rollout.faults))  # actor deaths survived and groups lost this step
    return batch, m


def _summed(*counts: dict) -> dict:
    out: dict = {}
    for c in counts:
        for k, v in c.items():
            out[k] = out.get(k, 0) + v
    return dict(sorted(out.items()))


def run(cfg: RLSysConfig, roles: Roles, train_data: PromptDataset, held_out: PromptDataset | None,
        log=print, base_model: str = "", resume_from: Path | None = None, progress: dict | None = None) -> dict:
    """The RL phase (run_from) with a rollout manager on the roles, surviving up to trainer.max_restarts
    deaths of a learner rank or of the manager: the lost part is rebuilt and the run goes on from its
    last checkpoint (from the start if it has none yet)."""
    rollout = start_rollout(cfg, roles, train_data, held_out)
    try:
        for restart in range(1, cfg.trainer.max_restarts + 2):
            try:
                out = run_from(cfg, roles, rollout, train_data, held_out, log, base_model, resume_from, progress)
                end_run(rollout, roles)
                return out
            except (LearnerLost, RolloutLost) as err:
                if restart > cfg.trainer.max_restarts:
                    raise
                resume_from = latest_intact(complete_checkpoints(cfg.run_dir), log) or resume_from
                lost = "rollout manager" if isinstance(err, RolloutLost) else "learners"
                log(f"{err}: rebuilding the {lost} (restart {restart} of trainer.max_restarts="
                    f"{cfg.trainer.max_restarts}) and going on from {resume_from or 'step 0 (no checkpoint yet)'}")
                rollout = _rebuild(cfg, roles, rollout, err, resume_from, train_data, held_out)
                if resume_from is None:  # the engines serve weights the new learners never had
                    rollout.push_now(0)
                    truncate_metrics(Path(cfg.run_dir), 0)
    except Exception:  # the round in flight ends before the caller goes on; an interrupt leaves at once
        try:
            end_run(rollout, roles)
        except Exception:  # noqa: BLE001  the manager itself is gone: the first error is the one to report
            pass
        raise


def _rebuild(cfg, roles: Roles, rollout: Rollout, err: Exception, resume_from, train_data, held_out) -> Rollout:
    """After a lost learner rank: a new learner group. After a lost rollout manager: a new manager on the
    fleet's engines (a dead one is restarted by its next call), and new learners only when there is no
    checkpoint to load into the ones that trained on."""
    import ray

    if isinstance(err, RolloutLost):
        ray.kill(rollout.actor, no_restart=True)
        roles.rollout = None
        rollout = start_rollout(cfg, roles, train_data, held_out)
        roles.faults.add("faults/rollout_restarts")  # reported by the next step that finishes
        if resume_from is not None:
            return rollout
    else:
        rollout.end()  # the round in flight ends first: weights move next
        roles.faults.add("faults/learner_restarts")
        roles.faults.add("faults/hangs_learner", isinstance(err, LearnerHung))
    roles.learners.rebuild()
    rollout.set_learners(roles.learners.actors)
    return rollout


def run_from(cfg: RLSysConfig, roles: Roles, rollout: Rollout, train_data: PromptDataset,
             held_out: PromptDataset | None, log=print, base_model: str = "", resume_from: Path | None = None,
             progress: dict | None = None) -> dict:
    """The RL phase on running roles: held-out reward, trainer.steps steps (from a checkpoint's step
    when resuming, checkpointing every trainer.save_every), held-out reward. progress: kept at the
    last finished step (what an interrupted run reports)."""
    t, run_dir, samples = cfg.trainer, Path(cfg.run_dir), cfg.eval.before_after_samples
    state = restore(resume_from, cfg, roles, base_model, log, push=rollout.push_now) if resume_from else None
    start, version = (state.step, state.version) if state else (0, 0)
    progress = {} if progress is None else progress
    progress["step"] = start
    if state:
        before = state.held_out_before
    else:
        before = rollout.evaluate(samples, t.seed) if samples and held_out else None
        if before:
            log(f"held-out before RL: pass@1 {before['accuracy']:.3f}, reward {before['reward_mean']:.3f} "
                f"({before['samples']} samples)")
        elif not samples:
            log("held-out evaluation before and after RL: skipped (eval.before_after_samples=0)")
    rollout.begin(start, version, state.prompts_drawn if state else 0, str(resume_from) if state else None)
    t0 = time.perf_counter()
    with RunLogger(cfg, train_data.prompts) as metrics, Watchdog(log) as watchdog:  # logger.backends
        for step in range(start + 1, t.steps + 1):
            raise_if_terminated()  # a SIGTERM whose own raise was swallowed ends the run here
            watchdog.step_started(step)  # a step past 3x the median says what it waits on
            batch, m = rl_step(cfg, roles, rollout, step, version)
            watchdog.step_ended()
            version = m["training/policy_version"]
            if cfg.eval.every and held_out and step % cfg.eval.every == 0:
                m.update(rollout.pass_at_k())
            table = metrics.due(step)
            rows = rollout.finish(step, str(run_dir / "rollouts" / f"step_{step:06d}.parquet")
                                  if cfg.logger.log_rollouts else None, metrics.n if table else 0, None)
            metrics.log(m, rows=rows if table else None)
            progress["step"] = step
            if t.save_every and (step % t.save_every == 0 or step == t.steps):
                save(cfg, roles, RunState(step, version, rollout.drawn, base_model, before), extra=rollout.save_anchors)
    rollout.end()
    after = rollout.evaluate(samples, t.seed) if samples and held_out else None
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
