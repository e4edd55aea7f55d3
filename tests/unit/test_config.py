import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from rlsys.config import ConfigError, RLSysConfig, register_configs, to_dataclass, validate
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


def test_pre_grouping_algorithm_keys_on_the_command_line_still_work_and_say_the_new_key():
    from rlsys.config import RENAMED, get_key, renamed_overrides

    said = []
    argv = ["algorithm=ppo", "algorithm.kl_coef=0.05", "algorithm.critic=true", "algorithm.lr=2e-5",
            "algorithm.critic_lr=5e-4", "rollout.n=4", "algorithm.kl.estimator=k2", "+algorithm.gamma=0.9"]
    out = renamed_overrides(argv, warn=said.append)
    assert out == ["algorithm=ppo", "algorithm.kl.coef=0.05", "algorithm.critic.enabled=true", "algorithm.optim.lr=2e-5",
                   "algorithm.critic.lr=5e-4", "rollout.n=4", "algorithm.kl.estimator=k2", "+algorithm.critic.gamma=0.9"]
    assert said[0] == "rlsys: algorithm.kl_coef is now algorithm.kl.coef (taken as algorithm.kl.coef=0.05)"
    assert len(said) == 5
    cfg = compose_cfg(out[:-1])
    a = cfg.algorithm
    assert (a.kl.coef, a.critic.enabled, a.optim.lr, a.critic.lr, a.kl.estimator) == (0.05, True, 2e-5, 5e-4, "k2")
    for new in RENAMED.values():  # every new name is a real key
        get_key(a, new)


def test_an_old_key_in_the_composed_config_fails_naming_it():
    with pytest.raises(ConfigCompositionException, match="kl_coef"):
        compose_cfg(["algorithm.kl_coef=0.1"])  # compose() is not the command line: no rewrite
