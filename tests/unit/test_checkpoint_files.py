"""Checkpoint directories on disk: atomic commit, what resume takes and refuses, keep_last,
metrics.jsonl truncation, the lr schedule. Real learners saving and resuming: tests/e2e/test_resume.py."""

import json
import math
import re
import shutil

import pytest
import torch
from omegaconf import OmegaConf

from rlsys.loop.checkpoint import (MARKER, RunState, begin, check_compatible, commit, complete_checkpoints, find_resume,
                              truncate_metrics)
from rlsys.config import RLSysConfig, to_dataclass
from rlsys.errors import ConfigError
from rlsys.learner.sharded_state import lr_scheduler


def config(run_dir, **trainer):
    cfg = OmegaConf.structured(RLSysConfig)
    cfg.run_dir = str(run_dir)
    cfg.trainer.output_dir = str(run_dir.parent)
    for k, v in trainer.items():
        cfg.trainer[k] = v
    return to_dataclass(cfg)


def save(run_dir, step, cfg, keep_last=2):
    tmp = begin(run_dir, step)
    (tmp / "policy").mkdir()
    (tmp / "policy" / "shard").write_bytes(b"x" * step)
    return commit(tmp, RunState(step=step, version=step, prompts_drawn=step, base_model="/m"), cfg, keep_last)


def test_a_crash_while_saving_leaves_nothing_resume_would_take(tmp_path):
    run = tmp_path / "run"
    cfg = config(run, resume="auto")
    save(run, 3, cfg)
    crashed = begin(run, 6)  # a save killed before its commit: shards written, no marker, temp name
    (crashed / "policy").mkdir()
    unmarked = run / "checkpoints" / "step_000009"  # a directory with the right name but no marker
    unmarked.mkdir()
    assert [p.name for p in complete_checkpoints(run)] == ["step_000003"]
    assert find_resume(cfg).name == "step_000003"
    save(run, 4, cfg)  # the next commit sweeps the crashed temp directory away
    assert not list((run / "checkpoints").glob(".step_*"))


def test_keep_last_and_auto_takes_the_newest(tmp_path):
    run = tmp_path / "run"
    cfg = config(run, resume="auto")
    for step in (2, 4, 6, 8):
        save(run, step, cfg, keep_last=2)
    assert [p.name for p in complete_checkpoints(run)] == ["step_000006", "step_000008"]
    assert json.loads((find_resume(cfg) / "controller.json").read_text())["step"] == 8
    assert (find_resume(cfg) / MARKER).is_file()


def test_auto_finds_the_latest_run_under_output_dir_and_none_means_fresh(tmp_path):
    old = tmp_path / "runs" / "old"
    save(old, 5, config(old))
    new = config(tmp_path / "runs" / "new", resume="auto")
    assert find_resume(new) == old / "checkpoints" / "step_000005"
    assert find_resume(config(tmp_path / "runs" / "new", resume="none")) is None
    said = []
    assert find_resume(config(tmp_path / "elsewhere" / "run", resume="auto"), log=said.append) is None
    assert "starting fresh" in said[0]


def test_resume_path_must_be_a_complete_checkpoint(tmp_path):
    run = tmp_path / "run"
    ckpt = save(run, 1, config(run))
    assert find_resume(config(tmp_path / "x", resume=str(ckpt))) == ckpt
    assert find_resume(config(tmp_path / "x", resume=str(run))) == ckpt  # a run directory: its latest
    (ckpt / MARKER).unlink()
    with pytest.raises(ConfigError, match="trainer.resume"):
        find_resume(config(tmp_path / "x", resume=str(ckpt)))


def test_resume_refuses_another_model_or_world_size_naming_the_keys(tmp_path):
    run = tmp_path / "run"
    ckpt = save(run, 1, config(run))
    other = config(run)
    other.learner.world_size, other.model.hidden_size = 1, 256
    with pytest.raises(ConfigError) as e:
        check_compatible(ckpt, other, base_model="/m")
    assert "learner.world_size: checkpoint 2, this run 1" in str(e.value)
    assert "model.hidden_size: checkpoint 128, this run 256" in str(e.value)
    with pytest.raises(ConfigError, match="base model: checkpoint '/m', this run '/other'"):
        check_compatible(ckpt, config(run), base_model="/other")
    assert check_compatible(ckpt, config(run), base_model="/m").step == 1


def test_a_checkpoint_from_before_the_grouped_algorithm_settings_still_resumes(tmp_path):
    run = tmp_path / "run"
    ckpt = save(run, 1, config(run))
    saved = json.loads((ckpt / "config.json").read_text())
    del saved["algorithm"]["critic"], saved["algorithm"]["optim"]
    saved["algorithm"].update(critic=False, critic_lr=1e-3, lr=3e-6)  # the flat layout of before
    (ckpt / "config.json").write_text(json.dumps(saved))
    assert check_compatible(ckpt, config(run), base_model="/m").step == 1
    ppo = config(run)
    ppo.algorithm.critic.enabled = True
    with pytest.raises(ConfigError, match="algorithm.critic.enabled: checkpoint False, this run True"):
        check_compatible(ckpt, ppo, base_model="/m")


def _old_layout(saved: dict) -> dict:
    """Today's config.json as the versions before the renames wrote it: every renamed key at its old name."""
    from rlsys.config.renamed_keys import RENAMED

    def node(dotted: str) -> tuple[dict, str]:
        *groups, name = dotted.split(".")
        d = saved
        for g in groups:
            d = d[g]
        return d, name

    values = {}
    for old, new in RENAMED.items():  # take every new value out first: an old name may be a group of today
        parent, name = node(new)
        values[old] = parent.pop(name)
    for group in ("optim", "kl", "critic", "sampling", "divergence", "distill", "lp_reg", "rollout_correction"):
        assert saved["algorithm"].pop(group) == {}  # every key of these groups was renamed
    for role in ("rollout", "learner", "reference"):
        assert saved["cluster"].pop(role) == {}
    del saved["cluster"]["verifier"]  # its gpus knob is new
    for old, value in values.items():
        parent, name = node(old)
        parent[name] = value
    return saved


def test_a_checkpoint_from_before_the_renames_loads_into_todays_config(tmp_path):
    from rlsys.config import as_dict
    from rlsys.config.renamed_keys import current_layout

    run = tmp_path / "run"
    now = config(run)
    now.algorithm.rollout_correction.cap, now.cluster.learner.gpus, now.task.max_ops = 3.0, 0.5, 4
    now.model.pretrain_steps, now.eval.before_after_samples, now.algorithm.critic.enabled = 7, 0, True
    old = _old_layout(as_dict(now))
    assert old["algorithm"]["rollout_correction_cap"] == 3.0 and old["cluster"]["learner_gpus"] == 0.5
    assert old["algorithm"]["critic"] is True and old["trainer"]["eval_n"] == 0 and old["task"]["steps"] == 4
    loaded = to_dataclass(OmegaConf.create(current_layout(old)))  # the schema fills the new cluster.verifier.gpus
    assert loaded == now
    ckpt = save(run, 1, now)
    (ckpt / "config.json").write_text(json.dumps(_old_layout(as_dict(now))))
    assert check_compatible(ckpt, now, base_model="/m").step == 1


def test_truncate_metrics_drops_steps_logged_after_the_checkpoint(tmp_path):
    path, samples = tmp_path / "metrics.jsonl", tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps({"step": s, "reward": s / 10}) + "\n" for s in range(1, 8)))
    samples.write_text("".join(json.dumps({"step": s}) + "\n" for s in (1, 6)))
    assert truncate_metrics(tmp_path, 5) == 3
    assert [json.loads(ln)["step"] for ln in path.read_text().splitlines()] == [1, 2, 3, 4, 5]
    assert [json.loads(ln)["step"] for ln in samples.read_text().splitlines()] == [1]


def test_lr_schedule_warmup_then_cosine_to_zero():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = lr_scheduler(opt, warmup_steps=3, schedule="cosine", total_steps=7)
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:3] == pytest.approx([1 / 4, 2 / 4, 3 / 4])  # linear warm-up over 3 steps
    assert lrs[3] == pytest.approx(1.0)  # the peak, then cosine over the remaining 4
    assert lrs[5] == pytest.approx(0.5 * (1 + math.cos(math.pi * 2 / 4)))
    assert lrs[7] == pytest.approx(0.0, abs=1e-12)


def test_a_checkpoint_changed_by_hand_is_damaged_auto_takes_the_one_before_and_path_is_refused(tmp_path):
    run = tmp_path / "run"
    cfg = config(run, resume="auto")
    for step in (2, 4):
        save(run, step, cfg)
    newest = run / "checkpoints" / "step_000004"
    said = []
    for tamper, problem in [
            (lambda: (newest / "policy" / "shard").write_bytes(b"x"), "policy/shard has 1 bytes, 4 were saved"),
            (lambda: (newest / "policy" / "shard").unlink(), "policy/shard missing"),
            (lambda: (newest / "controller.json").write_text(
                (newest / "controller.json").read_text().replace('"step": 4', '"step": 5')),
             "controller.json changed since it was saved")]:
        backup = tmp_path / "backup"
        shutil.copytree(newest, backup)
        tamper()
        assert find_resume(cfg, log=said.append).name == "step_000002"
        assert problem in said[-1] and str(newest) in said[-1]
        with pytest.raises(ConfigError, match=re.escape(problem)):
            find_resume(config(run, resume=str(newest)))
        shutil.rmtree(newest)
        shutil.copytree(backup, newest)
        shutil.rmtree(backup)
        assert find_resume(cfg).name == "step_000004"  # intact again
    (newest / MARKER).write_text("{not json")
    assert find_resume(cfg, log=said.append).name == "step_000002" and "unreadable" in said[-1]


def test_anchors_saved_when_verifier_details_were_dicts_load_as_verifier_details(tmp_path):
    import pickle
    from contextlib import nullcontext
    from types import SimpleNamespace

    from rlsys.loop.checkpoint import restore
    from rlsys.loop.pipeline import AnchorPool
    from rlsys.rollout.manager import load_anchors
    from rlsys.sync.result import SyncResult
    from rlsys.verify.details import VerifierDetails
    from tests.unit.test_data import make_batch

    run = tmp_path / "run"
    ckpt = save(run, 1, config(run))
    anchors = AnchorPool.__new__(AnchorPool)  # as an older version pickled it: details were flat dicts
    anchors.pool, anchors.cursor = make_batch([1, 2]), 1
    anchors.pool.verifier_details = [{"parsed": "1", "reason": "match", "seconds": 0.1}, {"reason": "x", "error": "E"}]
    (ckpt / "anchors.pkl").write_bytes(pickle.dumps(anchors))
    fleet = SimpleNamespace(sync_targets=lambda: [], serve=lambda v, snap: None, lost_in_push=lambda engines: None,
                            kill_stuck=lambda: 0, paused=lambda engines: nullcontext())
    roles = SimpleNamespace(fleet=fleet, learners=SimpleNamespace(load_state=lambda path: None,
                                                                  push_weights=lambda e, v, **_: SyncResult(0, 0.0)))
    state = restore(ckpt, config(run), roles, base_model="/m", log=lambda msg: None)
    back = load_anchors(ckpt)
    assert state.step == 1 and back.cursor == 1
    assert back.pool.verifier_details == [VerifierDetails(reason="match", seconds=0.1, extra={"parsed": "1"}),
                                          VerifierDetails(reason="x", error="E")]
