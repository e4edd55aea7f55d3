"""Checkpoints of a run and exact resume (the controller's side; the ranks' side is
rlsys/learner/sharded_state.py).

A checkpoint is a directory <run>/checkpoints/step_<N>/ holding the learner group's sharded
distributed checkpoint (model and optimizer, one shard file per rank: never gathered), each rank's
RNG and lr-scheduler state, the controller's state (step, policy version, how many prompt
batches were drawn, the DPH-RL anchor pool and cursor) and the config it was made with.

Safe: it is written under a temporary name with a completion marker last, then renamed into
place, so a crash while saving leaves nothing that resume would take; resume refuses a
checkpoint made for another model or world size, naming the keys that differ. The marker lists
every file with its size (and the SHA-256 of the small ones: state, config, RNG): a checkpoint
changed afterwards (a file removed, cut short or edited) is damaged; auto resume then takes the
one before it and says why, an explicit PATH is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rlsys.config import RLSysConfig, as_dict
from rlsys.errors import ConfigError
from rlsys.config.renamed_keys import current_layout

MARKER = "COMPLETE"  # written last: a directory without it is not a checkpoint
HASHED_BYTES = 1 << 20  # files up to this size are hashed in the marker too (large shards: size only)
_STEP_DIR = re.compile(r"^step_(\d{6,})$")
# Keys whose change makes a checkpoint another run's: its tensors would not fit, or mean another model.
MUST_MATCH = ("model.path", "model.gguf", "model.gguf_sha256", "model.hidden_size", "model.num_layers",
              "model.num_heads", "model.dtype", "learner.world_size", "algorithm.critic.enabled")


@dataclass
class RunState:
    """What the controller needs, besides the learners' state, to continue a run exactly."""

    step: int  # last finished step
    version: int  # policy version after that step (the engines get it on resume)
    prompts_drawn: int  # prompt batches taken from the training order so far
    base_model: str  # the model path the run started from
    held_out_before: dict | None = None  # the held-out reward measured before step 1
    anchor_cursor: int = 0  # DPH-RL: next anchor sample
    extra: dict = field(default_factory=dict)


def checkpoints_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def complete_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = checkpoints_dir(run_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if (m := _STEP_DIR.match(p.name)) and (p / MARKER).is_file()]
    return [p for _, p in sorted(found)]


def begin(run_dir: str | Path, step: int) -> Path:
    """A fresh temporary directory for the checkpoint of `step` (ranks write their shards into it)."""
    tmp = checkpoints_dir(run_dir) / f".step_{step:06d}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    return tmp


def commit(tmp: Path, state: RunState, cfg: RLSysConfig, keep_last: int) -> Path:
    """Write the controller's state and the marker, rename into place, keep the last `keep_last`."""
    (tmp / "controller.json").write_text(json.dumps(asdict(state), indent=2))
    (tmp / "config.json").write_text(json.dumps(as_dict(cfg), indent=2))
    _fsync_tree(tmp)
    (tmp / MARKER).write_text(json.dumps({"step": state.step, "files": _manifest(tmp)}, indent=1))
    final = tmp.parent / f"step_{state.step:06d}"
    if final.exists():  # a checkpoint of the same step from an earlier attempt: this one replaces it
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync_dir(final.parent)
    for old in complete_checkpoints(tmp.parent.parent)[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    for stale in tmp.parent.glob(".step_*.tmp-*"):  # left by a crash while saving
        shutil.rmtree(stale, ignore_errors=True)
    return final


def _manifest(root: Path) -> dict[str, list]:
    """Every file under root (but the marker): [bytes, sha256 or None for a large one]."""
    out = {}
    for f in sorted(p for p in root.rglob("*") if p.is_file() and p.name != MARKER):
        size = f.stat().st_size
        out[str(f.relative_to(root))] = [size, _sha256(f) if size <= HASHED_BYTES else None]
    return out


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def damage(path: Path) -> list[str]:
    """What in a complete checkpoint differs from its marker's list of files (empty: intact)."""
    try:
        files = json.loads((path / MARKER).read_text()).get("files")
    except (OSError, ValueError, AttributeError) as e:
        return [f"{MARKER} unreadable ({e})"]
    if files is None:  # a marker from before the file list: nothing to check against
        return []
    problems = []
    for name, (size, digest) in files.items():
        f = path / name
        if not f.is_file():
            problems.append(f"{name} missing")
        elif f.stat().st_size != size:
            problems.append(f"{name} has {f.stat().st_size} bytes, {size} were saved")
        elif digest is not None and _sha256(f) != digest:
            problems.append(f"{name} changed since it was saved")
    return problems


def load_state(path: Path) -> RunState:
    return RunState(**json.loads((path / "controller.json").read_text()))


def find_resume(cfg: RLSysConfig, log=print) -> Path | None:
    """The checkpoint trainer.resume asks for: none -> None; PATH -> that one (a run directory
    means its latest); auto -> the latest in this run directory, else in the most recent run
    directory under trainer.output_dir that has one, else None (a fresh start, said so)."""
    how = cfg.trainer.resume
    if how == "none":
        return None
    if how != "auto":
        path = Path(how).expanduser()
        if not (path / MARKER).is_file():
            found = complete_checkpoints(path)
            if not found:
                raise ConfigError(f"config key 'trainer.resume': {path} is neither a complete checkpoint "
                                  f"(no {MARKER} marker) nor a run directory with one under checkpoints/")
            path = found[-1]
        if problems := damage(path):
            raise ConfigError(f"config key 'trainer.resume': checkpoint {path} is damaged: {'; '.join(problems)}")
        return path
    here = latest_intact(complete_checkpoints(cfg.run_dir), log)
    if here:
        return here
    newest = [c for p in Path(cfg.trainer.output_dir).expanduser().glob("**/checkpoints")
              if (c := latest_intact(complete_checkpoints(p.parent), log))]  # each run's latest
    if not newest:
        log(f"trainer.resume=auto: no checkpoint in {cfg.run_dir} or under {cfg.trainer.output_dir}; starting fresh")
        return None
    return max(newest, key=lambda c: (c / MARKER).stat().st_mtime)


def latest_intact(found: list[Path], log=print) -> Path | None:
    """The newest of these checkpoints that is not damaged; each damaged one skipped is said."""
    for path in reversed(found):
        problems = damage(path)
        if not problems:
            return path
        log(f"trainer.resume: skipping damaged checkpoint {path}: {'; '.join(problems)}")
    return None


def check_compatible(path: Path, cfg: RLSysConfig, base_model: str) -> RunState:
    """The checkpoint's state, if it was made for this model and world size; else ConfigError
    naming every key that differs."""
    saved = current_layout(json.loads((path / "config.json").read_text()))  # an older version's keys renamed
    now = as_dict(cfg)
    diffs = [f"{k}: checkpoint {_get(saved, k)!r}, this run {_get(now, k)!r}" for k in MUST_MATCH
             if _get(saved, k) != _get(now, k)]
    state = load_state(path)
    if state.base_model != base_model:
        diffs.append(f"base model: checkpoint {state.base_model!r}, this run {base_model!r}")
    if diffs:
        raise ConfigError(f"trainer.resume: checkpoint {path} was made for another run; keys that differ: "
                          + "; ".join(diffs) + ". Resume it with the same settings, or set trainer.resume=none.")
    return state


def truncate_metrics(run_dir: Path, step: int) -> int:
    """Drop the metrics.jsonl and samples.jsonl lines of steps after `step` (logged after the
    checkpoint, before a crash): the resumed run logs them again, so no step is duplicated.
    Returns the lines dropped."""
    return sum(_truncate_jsonl(run_dir / name, step) for name in ("metrics.jsonl", "samples.jsonl"))


def _truncate_jsonl(path: Path, step: int) -> int:
    if not path.is_file():
        return 0
    lines = path.read_text().splitlines()
    keep = [ln for ln in lines if ln.strip() and json.loads(ln).get("step", 0) <= step]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(ln + "\n" for ln in keep))
    os.replace(tmp, path)
    return len(lines) - len(keep)


def _get(d: dict, dotted: str):
    for part in dotted.split("."):
        d = d.get(part) if isinstance(d, dict) else None
    return d


def _fsync_tree(root: Path) -> None:
    for dirpath, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class PromptCursor:
    """The training prompt order, counting the batches drawn, so a resumed run skips exactly those."""

    def __init__(self, batches, skip: int = 0):
        self.batches, self.drawn = batches, 0
        for _ in range(skip):
            next(self)

    def __iter__(self):
        return self

    def __next__(self):
        self.drawn += 1
        return next(self.batches)


def save(cfg: RLSysConfig, roles, state: RunState, extra=None) -> Path:
    """A resumable checkpoint of the run after `state.step` (every learner rank writes its shards).
    extra(directory) -> the DPH-RL anchor cursor: writes what else the run keeps (the rollout manager's
    anchor pool: the engines cannot draw those initial-policy samples again)."""
    tmp = begin(cfg.run_dir, state.step)
    roles.learners.save_state(str(tmp / "learner"))
    if extra is not None:
        state.anchor_cursor = extra(str(tmp))
    return commit(tmp, state, cfg, cfg.trainer.keep_last)


def restore(path: Path, cfg: RLSysConfig, roles, base_model: str, log=print, push=None) -> RunState:
    """Learners back to the checkpoint's state, the engines to its policy version (push(version); by
    default the learners push into roles.fleet), metrics.jsonl cut back to its step. The checkpoint's
    anchor pool, if any, is read by whoever samples (rlsys/rollout/manager.load_anchors)."""
    from rlsys.learner.group import LearnerLost
    from rlsys.loop.pipeline import sync_weights

    state = check_compatible(path, cfg, base_model)
    try:
        roles.learners.load_state(str(path / "learner"))
    except LearnerLost:
        raise
    except Exception as e:  # e.g. a shard changed in place (same size): its bytes do not load
        raise ConfigError(f"trainer.resume: the learners could not load checkpoint {path}: "
                          f"{str(e).strip().splitlines()[-1][:300]}") from e
    (push or (lambda v: sync_weights(roles, v)))(state.version)  # the fleet serves the resumed policy
    dropped = truncate_metrics(Path(cfg.run_dir), state.step)
    log(f"resumed from {path}: step {state.step} done, policy version {state.version}"
        + (f"; {dropped} metric lines logged after it were dropped (those steps run again)" if dropped else ""))
    return state
