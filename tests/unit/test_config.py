import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from rlsys.config import ConfigError, RLSysConfig, register_configs, to_dataclass
from rlsys.config.validation import validate
from rlsys.train import CONF_DIR

register_configs()


def compose_cfg(overrides):
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        cfg = compose(config_name="config", overrides=overrides)
    cfg = OmegaConf.to_container(cfg, resolve=False)
    cfg["run_dir"] = "/tmp/x"  # normally Hydra's output dir, which compose() does not set
    return validate(to_dataclass(OmegaConf.create(cfg)))


def test_defaults_compose_to_typed_config():
    cfg = compose_cfg([])
    assert isinstance(cfg, RLSysConfig)
    assert cfg.algorithm.advantage == "grpo" and cfg.learner.world_size == 2 and cfg.rollout.n == 8


def test_overrides_apply():
    cfg = compose_cfg(["trainer.steps=30", "rollout.n=4", "algorithm.optim.lr=2e-5"])
    assert (cfg.trainer.steps, cfg.rollout.n, cfg.algorithm.optim.lr) == (30, 4, 2e-5)


def test_a_role_deadline_override_fixes_that_roles_hung_limit():
    from rlsys.loop.roles import deadlines_of

    d = deadlines_of(compose_cfg(["cluster.deadline_s.learner=600", "cluster.deadline_scale=2"]))
    assert d.limits("learner:train_step")[1] == 600.0 and d.limits("learner:push_weights")[1] == 600.0
    assert d.limits("verifier") == (2 * 900.0, 2 * 900.0)  # derived (start-up: nothing measured), scaled


def test_unknown_key_fails_naming_it():
    with pytest.raises(ConfigCompositionException) as e:
        compose_cfg(["trainer.stepz=3"])
    assert "stepz" in str(e.value.__cause__ or e.value)


def test_bad_type_fails_naming_key():
    with pytest.raises((ConfigCompositionException, ValidationError)) as e:
        compose_cfg(["trainer.steps=abc"])
    assert "trainer.steps" in str(e.value) + str(e.value.__cause__)


@pytest.mark.parametrize("override,key", [
    ("rollout.n=0", "rollout.n"),
    ("algorithm.optim.lr=-1", "algorithm.optim.lr"),
    ("algorithm.kl.coef=-0.1", "algorithm.kl.coef"),
    ("algorithm.advantage=nope", "algorithm.advantage"),
    ("algorithm.loss_agg=nope", "algorithm.loss_agg"),
    ("rollout.sync_backend=carrier_pigeon", "rollout.sync_backend"),
    ("rollout.top_p=1.5", "rollout.top_p"),
    ("learner.backend=mpi", "learner.backend"),
    ("learner.max_tokens_per_micro_batch=-1", "learner.max_tokens_per_micro_batch"),
    ("learner.attn_implementation=flash3", "learner.attn_implementation"),
    ("learner.mixed_precision=fp8", "learner.mixed_precision"),
    ("cluster.threads=all", "cluster.threads"),
    ("cluster.deadline_scale=-1", "cluster.deadline_scale"),
    ("cluster.deadline_s.verifier=-5", "cluster.deadline_s.verifier"),
])
def test_bad_values_fail_naming_key(override, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        compose_cfg([override])


@pytest.mark.parametrize("overrides,key", [
    (["algorithm=nsr", "algorithm.critic.enabled=true"], "algorithm.critic.enabled"),  # nsr has no use for a value model
    (["algorithm=ppo", "algorithm.critic.enabled=false"], "algorithm.critic.enabled"),  # gae needs one
    (["algorithm=opd"], "algorithm.distill.teacher_path"),  # distillation without a teacher
    (["algorithm=grpo", "algorithm.distill.teacher_path=/tmp"], "algorithm.distill.teacher_path"),  # a teacher nobody reads
    (["algorithm=w_reinforce", "algorithm.w_lambda=-0.1"], "algorithm.w_lambda"),
    (["algorithm=dph_rl", "algorithm.divergence.name=tv"], "algorithm.divergence.name"),
    (["algorithm=dph_rl", "algorithm.divergence.coef=-1"], "algorithm.divergence.coef"),
    (["algorithm=dapo", "algorithm.sampling.overlong_buffer=1.5"], "algorithm.sampling.overlong_buffer"),
    (["algorithm=dapo", "rollout.n=1"], "rollout.n"),  # no group can be informative
    (["algorithm=ppo", "algorithm.critic.gae_lambda=1.5"], "algorithm.critic.gae_lambda"),
    (["algorithm=gspo", "algorithm.advantage=gae", "algorithm.critic.enabled=true"], "algorithm.loss"),
    (["algorithm.dual_clip=0.5"], "algorithm.dual_clip"),
])
def test_nonsense_algorithm_configs_fail_naming_key(overrides, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        compose_cfg(overrides)


def test_every_preset_composes():
    from pathlib import Path

    names = sorted(p.stem for p in (Path(CONF_DIR) / "algorithm").glob("*.yaml"))
    assert len(names) >= 17
    for name in names:
        extra = ["algorithm.distill.teacher_path=/tmp"] if name in ("opd", "g_opd", "kdrl") else []
        assert compose_cfg([f"algorithm={name}", *extra]).algorithm.name == name


@pytest.mark.parametrize("override,message", [
    ("algorithm.rollout_correction_cap=3", "algorithm.rollout_correction_cap was renamed to algorithm.rollout_correction.cap"),
    ("algorithm.rollout_correction=tis", "algorithm.rollout_correction was renamed to algorithm.rollout_correction.mode"),
    ("cluster.learner_gpus=1", "cluster.learner_gpus was renamed to cluster.learner.gpus"),
    ("+cluster.rollout_resources={a: 1}", "cluster.rollout_resources was renamed to cluster.rollout.resources"),
    ("model.warmup_steps=10", "model.warmup_steps was renamed to model.pretrain_steps"),
    ("task.steps=3", "task.steps was renamed to task.max_ops"),
    ("trainer.eval_n=0", "trainer.eval_n was renamed to eval.before_after_samples"),
    ("algorithm.kl_coef=0.1", "algorithm.kl_coef was renamed to algorithm.kl.coef"),  # renamed before: same error
    ("algorithm.critic=true", "algorithm.critic was renamed to algorithm.critic.enabled"),
])
def test_a_renamed_key_fails_naming_the_new_key(override, message):
    from rlsys.config.renamed_keys import check_overrides

    with pytest.raises(ConfigError) as e:
        check_overrides(["rollout.n=4", override, "algorithm=ppo"])
    assert str(e.value) == message


def test_todays_keys_pass_and_every_rename_points_at_a_real_key():
    from rlsys.config import get_key
    from rlsys.config.renamed_keys import RENAMED, check_overrides

    check_overrides(["algorithm=ppo", "algorithm.rollout_correction.cap=3", "cluster.learner.gpus=1", "task.max_ops=3",
                     "algorithm.critic={enabled: true}", "eval.before_after_samples=0", "trainer.steps=2", "rlsys.jsonl"])
    cfg = RLSysConfig()
    for old, new in RENAMED.items():
        get_key(cfg, new)  # raises if the new key does not exist
        parent, _, name = old.rpartition(".")
        assert not hasattr(get_key(cfg, parent), name) or old + "." in new + ".", old  # the old key is gone (or a group)


def test_the_command_line_refuses_a_renamed_key_before_composing(monkeypatch, capsys):
    from rlsys import cli

    monkeypatch.setattr("sys.argv", ["rlsys", "train", "trainer.steps=1", "algorithm.rollout_correction_cap=3"])
    with pytest.raises(SystemExit) as e:
        cli.main()
    assert e.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "rlsys: error: algorithm.rollout_correction_cap was renamed to algorithm.rollout_correction.cap")


def test_renamed_keys_compose_to_what_the_old_keys_set():
    cfg = compose_cfg(["algorithm.rollout_correction.mode=tis", "algorithm.rollout_correction.cap=3",
                       "cluster.learner.gpus=0.5", "model.pretrain_steps=10", "task.max_ops=3",
                       "eval.before_after_samples=0"])
    assert (cfg.algorithm.rollout_correction.mode, cfg.algorithm.rollout_correction.cap) == ("tis", 3.0)
    assert (cfg.cluster.learner.gpus, cfg.cluster.learner.cpus, cfg.cluster.verifier.cpus) == (0.5, 0.5, 0.25)
    assert (cfg.model.pretrain_steps, cfg.task.max_ops, cfg.eval.before_after_samples) == (10, 3, 0)


def test_an_old_key_in_the_composed_config_fails_naming_it():
    with pytest.raises(ConfigCompositionException, match="rollout_correction_cap"):
        compose_cfg(["algorithm.rollout_correction_cap=3"])  # compose() is not the command line: Hydra's own error


def test_preset_yaml_carries_only_what_differs_from_the_defaults():
    """conf/ sets a key only to change it: a value equal to the dataclass default is noise that can go stale."""
    from pathlib import Path

    import yaml

    defaults = OmegaConf.to_container(OmegaConf.structured(RLSysConfig))

    def same_as_default(node: dict, where: dict, path: str) -> list[str]:
        out = []
        for key, value in node.items():
            if key in ("defaults", "name") or key not in where:
                continue
            if isinstance(value, dict):
                out += same_as_default(value, where[key], f"{path}{key}.")
            elif value == where[key]:
                out.append(f"{path}{key}")
        return out

    found = []
    for f in sorted(Path(CONF_DIR).glob("*/*.yaml")):
        text = f.read_text()
        node = yaml.safe_load(text) or {}
        root = defaults if "@package _global_" in text else defaults[f.parent.name]
        found += [f"{f.relative_to(CONF_DIR)}: {k}" for k in same_as_default(node, root, "")]
    assert found == []
