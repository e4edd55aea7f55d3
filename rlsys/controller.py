"""The single controller: prepares data and model, places the roles, and runs the RL loop."""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow.parquet as pq

from rlsys.config import ConfigError, RLSysConfig, as_dict
from rlsys.data.batch import RolloutBatch
from rlsys.data.dataset import PromptDataset, load_prompts
from rlsys.learner.advantages import compute_advantages
from rlsys.metrics import MetricsLog, StepTimer, step_metrics
from rlsys.verify import VERIFIERS

if TYPE_CHECKING:
    from rlsys.learner.group import LearnerGroup
    from rlsys.rollout.fleet import RolloutFleet
    from rlsys.verify.pool import VerifierPool


@dataclass
class Roles:
    fleet: RolloutFleet
    verifiers: VerifierPool
    reference: object  # ReferenceServer actor handle
    learners: LearnerGroup


def prepare_data_and_model(cfg: RLSysConfig, log=print):
    """Everything that can fail on bad input is checked here, before any actor starts."""
    from transformers import AutoTokenizer

    from rlsys.models.prepare import check_model_path, file_digest, tiny_model

    train_path, eval_path = _dataset_paths(cfg)
    max_prompt = cfg.rollout.max_model_len - cfg.rollout.max_new_tokens
    if cfg.model.path:
        model_path = check_model_path(cfg.model.path)
    else:  # check the files with the char tokenizer before spending a minute on the warm-up
        from rlsys.models.tiny import build_char_tokenizer

        char_tok = build_char_tokenizer()
        rows = load_prompts(train_path, char_tok, VERIFIERS, max_prompt)
        load_prompts(eval_path, char_tok, VERIFIERS, max_prompt)
        model_path = tiny_model(cfg, rows, file_digest(train_path), log=log)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    train = load_prompts(train_path, tokenizer, VERIFIERS, max_prompt)
    held_out = load_prompts(eval_path, tokenizer, VERIFIERS, max_prompt)
    return train, held_out, str(model_path), tokenizer


def _dataset_paths(cfg: RLSysConfig) -> tuple[str, str]:
    """The user's parquet files, or the built-in task's splits written into the run directory."""
    from rlsys.data.arithmetic import write_builtin_splits

    t = cfg.task
    if t.train_path and t.eval_path:
        return t.train_path, t.eval_path
    if t.name != "arithmetic":
        raise ConfigError(f"config key 'task.name': no built-in task {t.name!r}; set task.train_path and task.eval_path")
    built = write_builtin_splits(Path(cfg.run_dir) / "data", t.num_train, t.num_eval, t.max_digits, t.seed)
    return str(t.train_path or built[0]), str(t.eval_path or built[1])


def start_roles(cfg: RLSysConfig, model_path: str, pad_id: int) -> Roles:
    """Ray actors for every role, each in its role's placement group."""
    import ray

    from rlsys.cluster import actor_options, init_ray, place_roles
    from rlsys.learner.group import LearnerGroup
    from rlsys.learner.worker import LearnerWorker
    from rlsys.reference.server import ReferenceServer
    from rlsys.rollout.fleet import RolloutFleet
    from rlsys.rollout.worker import RolloutWorker
    from rlsys.verify.pool import VerifierPool
    from rlsys.verify.worker import VerifierWorker

    init_ray(cfg)
    groups = place_roles(cfg)
    engines = [ray.remote(RolloutWorker).options(**actor_options(groups, "rollout", i)).remote(cfg, model_path, i)
               for i in range(cfg.rollout.num_engines)]
    verifiers = [ray.remote(VerifierWorker).options(**actor_options(groups, "verifier", i)).remote()
                 for i in range(cfg.cluster.num_verifiers)]
    reference = ray.remote(ReferenceServer).options(**actor_options(groups, "reference", 0)).remote(
        model_path, cfg.model.dtype, cfg.rollout.temperature, pad_id, cfg.learner.micro_batch_size)
    W = cfg.learner.world_size
    learners = [ray.remote(LearnerWorker).options(**actor_options(groups, "learner", i)).remote(cfg, model_path, i, W)
                for i in range(W)]
    ray.get([e.get_version.remote() for e in engines])  # surface engine start-up errors here
    return Roles(RolloutFleet(engines, cfg), VerifierPool(verifiers), reference, LearnerGroup(learners, cfg))


def evaluate(roles: Roles, data: PromptDataset, n: int, seed: int) -> dict:
    """Mean reward of n samples per held-out prompt (same seeds every call, so runs compare)."""
    batch = roles.verifiers.score(roles.fleet.generate(data, np.arange(len(data)), seed=seed, n=n))
    return {"reward_mean": float(batch.reward.mean()), "accuracy": float((batch.reward > 0).mean()),
            "samples": len(batch)}


def rl_step(cfg: RLSysConfig, roles: Roles, train: PromptDataset, prompt_idx, step: int, version: int):
    """One RL step, straight through: generate -> verify + reference -> advantages -> train -> sync."""
    import ray

    a, timer = cfg.algorithm, StepTimer()
    with timer("generate"):
        batch = roles.fleet.generate(train, prompt_idx, seed=cfg.trainer.seed * 100_003 + step)
    with timer("verify"):
        roles.verifiers.score(batch)
    with timer("reference"):
        batch.ref_logprobs = ray.get(roles.reference.logprobs.remote(batch.prompt_token_ids, batch.response_token_ids))
    batch.advantages, batch.loss_mask = compute_advantages(batch, a)
    with timer("train"):
        stats = roles.learners.train(batch)
    with timer("sync"):
        sync = roles.learners.push_weights(roles.fleet.engines, version + 1)
    return batch, step_metrics(step, version + 1, batch, stats, sync, timer)


def train(cfg: RLSysConfig, log=print) -> dict:
    run = Path(cfg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(json.dumps(as_dict(cfg), indent=2))
    summary = {"run_dir": str(run), "status": "failed"}
    train_data, held_out, model_path, tokenizer = prepare_data_and_model(cfg, log)
    log(f"data: {len(train_data)} train prompts ({train_data.path}), {len(held_out)} held-out ({held_out.path})")
    metrics, t, roles = MetricsLog(run, cfg.logger.print_every), cfg.trainer, None
    try:
        roles = start_roles(cfg, model_path, tokenizer.pad_token_id or 0)
        before = evaluate(roles, held_out, t.eval_n, seed=t.seed) if t.eval_n else None
        log(f"held-out reward before RL: {before}")
        batches, version, t0 = train_data.batches(t.prompts_per_step, t.seed), 0, time.perf_counter()
        for step in range(1, t.steps + 1):
            batch, m = rl_step(cfg, roles, train_data, next(batches), step, version)
            version = m["policy_version"]
            metrics.log(m)
            if cfg.logger.log_rollouts:
                _write_rollouts(batch, run / "rollouts" / f"step_{step:06d}.parquet")
        after = evaluate(roles, held_out, t.eval_n, seed=t.seed) if t.eval_n else None
        ckpt = roles.learners.save(str(run / "checkpoint")) if t.save_checkpoint else None
        summary.update(status="ok", steps=t.steps, base_model=model_path, checkpoint=ckpt,
                       held_out_before=before, held_out_after=after, train_seconds=time.perf_counter() - t0)
    except BaseException as e:
        summary["error"] = "".join(traceback.format_exception_only(type(e), e)).strip()
        raise
    finally:
        (run / "summary.json").write_text(json.dumps(summary, indent=2))
        if roles is not None:
            _shutdown(roles)
    _print_summary(summary, log)
    return summary


def _write_rollouts(batch: RolloutBatch, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(batch.to_arrow(), path)


def _shutdown(roles: Roles) -> None:
    try:
        roles.learners.shutdown()
    except Exception:  # best effort: the actors die with the driver anyway
        pass


def _print_summary(s: dict, log) -> None:
    b, a = s.get("held_out_before") or {}, s.get("held_out_after") or {}
    log("=" * 72)
    if b and a:
        log(f"held-out reward: {b['reward_mean']:.3f} before RL -> {a['reward_mean']:.3f} after "
            f"{s['steps']} steps ({a['samples']} samples each)")
    log(f"checkpoint (HF format): {s.get('checkpoint')}")
    log(f"run directory: {s['run_dir']}  (metrics.jsonl, summary.json, rollouts/)")
