"""Resolve the policy checkpoint: a user's HF directory, or the cached embedded tiny model."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from rlsys.config import ConfigError, RLSysConfig

CACHE_FORMAT = 1  # bump when the tiny model or warm-up recipe changes


def check_model_path(path: str, key: str = "model.path") -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError(f"config key '{key}': {p} does not exist")
    if not (p / "config.json").exists():
        raise ConfigError(f"config key '{key}': {p} is not an HF checkpoint directory (no config.json)")
    return p


def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def tiny_model_key(cfg: RLSysConfig, train_digest: str, demos: str | None = None) -> str:
    m = cfg.model
    # "warmup_*": model.pretrain_*'s names of before, kept so the key (and the cached model) stays the same
    spec = {"format": CACHE_FORMAT, "hidden": m.hidden_size, "layers": m.num_layers, "heads": m.num_heads,
            "warmup_steps": m.pretrain_steps, "warmup_lr": m.pretrain_lr, "seed": cfg.trainer.seed,
            "data": train_digest}
    if demos:  # digest of the warm-up targets, some of them environments' worked episodes (tool use)
        spec["demos"] = demos
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def tiny_model(cfg: RLSysConfig, train: "PromptDataset", train_digest: str, log=print) -> Path:  # noqa: F821
    """The embedded tiny model warmed up on the training prompts: built once, then cached."""
    from rlsys.models.tiny import build_char_tokenizer, build_tiny_model, save_checkpoint
    from rlsys.models.warmup import supervised_warmup

    m = cfg.model
    rows = warmup_rows(train)
    demos = None
    if any(r["ground_truth"] != g for r, g in zip(rows, train.ground_truth)):
        demos = hashlib.sha256("\0".join(r["ground_truth"] for r in rows).encode()).hexdigest()[:16]
    dest = Path(m.cache_dir).expanduser() / f"tiny-{tiny_model_key(cfg, train_digest, demos)}"
    if (dest / "config.json").exists():
        log(f"base model: cached {dest}")
        return dest
    log(f"base model: building the tiny model and pretraining it for {m.pretrain_steps} steps -> {dest}")
    tokenizer = build_char_tokenizer()
    model = build_tiny_model(m.hidden_size, m.num_layers, m.num_heads, len(tokenizer), seed=cfg.trainer.seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    try:
        supervised_warmup(model, tokenizer, rows, m.pretrain_steps, m.pretrain_lr, cfg.trainer.seed, log=log)
    finally:
        torch.set_num_threads(threads)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".building-"))
    save_checkpoint(model, tokenizer, tmp)
    try:
        os.replace(tmp, dest)  # atomic: a concurrent run sees either nothing or a whole checkpoint
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another run finished first; theirs is identical
    return dest


def warmup_rows(train) -> list[dict]:
    """(prompt, target) pairs of the warm-up: a row's environment's worked episode (Environment.demo: a tool
    call, its output, the answer) where it has one, else the ground truth."""
    from rlsys.agents.env import ENVS

    envs = train.env or [None] * len(train)
    return [{"prompt": p, "ground_truth": (ENVS[e].demo(p, g) if e else None) or g}
            for p, g, e in zip(train.prompts, train.ground_truth, envs)]
