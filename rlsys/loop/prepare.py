"""Before any actor starts: the run's datasets (user files or a built-in task's splits) and the
model checkpoint (given, converted from GGUF, or the embedded tiny model), checked on bad input.
Shared by `rlsys train` (controller.py) and `rlsys eval` (eval/run.py)."""

from __future__ import annotations

from pathlib import Path

from rlsys.config import ConfigError, RLSysConfig
from rlsys.data.dataset import load_prompts
from rlsys.rollout.speculative import prepare_speculative
from rlsys.verify import configure, known_sources
from rlsys.verify.model_pool import resolve_model_paths


def prepare_data_and_model(cfg: RLSysConfig, log=print):
    """Everything that can fail on bad input is checked here, before any actor starts."""
    from transformers import AutoTokenizer

    from rlsys.models.resolve import check_model_path, file_digest, tiny_model

    from rlsys.agents.env import ENVS
    from rlsys.agents.modules import load_env_modules

    train_path, eval_path = _dataset_paths(cfg)
    configure(cfg.verifier)
    resolve_model_paths(cfg, log)  # verifier.models: checked (GGUF converted) before any actor starts
    try:
        load_env_modules(cfg.rollout.agent.modules)
    except (ImportError, ValueError) as e:
        raise ConfigError(f"config key 'rollout.agent.modules': {e}") from e
    episodes = cfg.rollout.agent.enabled
    # an environment registered under a data_source name serves (and rewards) rows of that source
    sources = known_sources(cfg.verifier) | (set(ENVS) if episodes else set())
    max_prompt = cfg.rollout.max_model_len - cfg.rollout.max_new_tokens
    if cfg.model.path:
        model_path = check_model_path(cfg.model.path)
    elif cfg.model.gguf:
        from rlsys.models.gguf import cached_conversion

        model_path = cached_conversion(cfg.model.gguf, cfg.model.cache_dir, cfg.model.gguf_sha256, log=log)
    else:  # check the files with the char tokenizer before spending a minute on the warm-up
        from rlsys.models.tiny import build_char_tokenizer

        char_tok = build_char_tokenizer()
        rows = load_prompts(train_path, char_tok, sources, max_prompt, episodes)
        load_prompts(eval_path, char_tok, sources, max_prompt, episodes)
        model_path = tiny_model(cfg, rows, file_digest(train_path), log=log)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if cfg.algorithm.distill.teacher_path:
        teacher = check_model_path(cfg.algorithm.distill.teacher_path, key="algorithm.distill.teacher_path")
        if AutoTokenizer.from_pretrained(teacher).get_vocab() != tokenizer.get_vocab():
            raise ConfigError(f"config key 'algorithm.distill.teacher_path': {teacher} has a different tokenizer "
                              f"than the student {model_path}; distillation compares per-token log-probs")
    prepare_speculative(cfg, str(model_path))  # draft checks (and a layers:K draft) before any actor starts
    train = load_prompts(train_path, tokenizer, sources, max_prompt, episodes)
    held_out = load_prompts(eval_path, tokenizer, sources, max_prompt, episodes)
    return train, held_out, str(model_path), tokenizer


def _dataset_paths(cfg: RLSysConfig) -> tuple[str, str]:
    """The user's parquet files, or the built-in task's splits written into the run directory."""
    from rlsys.agents import calculator
    from rlsys.data import arithmetic, reverse_words, word_problems

    t, out = cfg.task, Path(cfg.run_dir) / "data"
    if t.train_path and t.eval_path:
        return t.train_path, t.eval_path
    if t.name == "word_problems":
        built = word_problems.write_splits(out, t.num_train, t.num_eval, t.max_ops, t.max_digits, t.seed)
    elif t.name == "reverse_words":
        built = reverse_words.write_splits(out, t.num_train, t.num_eval, t.max_words, t.seed)
    elif t.name in ("calc", "calc_chat"):
        built = calculator.write_splits(out, t.num_train, t.num_eval, t.seed, chat=t.name == "calc_chat")
    elif t.name == "arithmetic":
        built = arithmetic.write_builtin_splits(out, t.num_train, t.num_eval, t.max_digits, t.seed)
    else:
        raise ConfigError(f"config key 'task.name': no built-in task {t.name!r}; set task.train_path and task.eval_path")
    return str(t.train_path or built[0]), str(t.eval_path or built[1])
