"""Adding an objective from the user's own file: register it, name it in algorithm.modules."""

import pytest
import torch
from omegaconf import OmegaConf

from rlsys.config import ConfigError, RLSysConfig, to_dataclass
from rlsys.config.validation import validate
from rlsys.learner.objective import needs, objective_stats, report
from rlsys.learner.losses import POLICY_LOSSES, LossInputs
from rlsys.learner.spec import spec


def cfg_with(**algorithm):
    cfg = OmegaConf.structured(RLSysConfig)
    cfg.run_dir = "/tmp/unused"
    cfg.algorithm = OmegaConf.merge(cfg.algorithm, algorithm)
    return validate(to_dataclass(cfg))


def test_cispo_from_a_user_module():
    cfg = cfg_with(loss="cispo", modules=["tests.objective_plugins"], clip_high=0.28)
    s = spec("loss", "cispo")
    assert "cispo" in POLICY_LOSSES and s.knobs == ("clip_low", "clip_high") and needs(cfg.algorithm) == set()
    assert [st.key for st in objective_stats(cfg.algorithm)] == ["cispo_clip_frac"]
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    x = LossInputs(logp=logp, logp_old=torch.tensor([[-1.5, -2.0]]), advantages=torch.tensor([[1.0, -1.0]]),
                   mask=torch.ones(1, 2, dtype=torch.bool))
    loss, stats = s.fn(x, **{k: getattr(cfg.algorithm, k) for k in s.knobs})
    loss.sum().backward()
    # token 0: ratio e^0.5 = 1.65 clipped to 1.28, and still a gradient (PPO's clip would give none)
    assert logp.grad[0, 0].item() == pytest.approx(-1.28) and logp.grad[0, 1].item() == pytest.approx(1.0)
    assert report({"tokens": 2.0, **stats}, cfg.algorithm) == {"cispo_clip_frac": 0.5}


def test_unknown_plugin_module_names_the_key():
    with pytest.raises(ConfigError, match="algorithm.modules"):
        cfg_with(modules=["no_such_module_xyz"])


def test_builtin_needs_are_declared_not_listed():
    assert needs(cfg_with(advantage="g_opd", distill={"teacher_path": "/tmp"}).algorithm) == {"teacher", "reference"}
    assert "critic" in needs(cfg_with(advantage="gae", critic={"enabled": True}).algorithm)
    assert needs(cfg_with(loss="lp_reg").algorithm) == {"full_distribution"}
    assert needs(cfg_with(divergence={"name": "js"}).algorithm) == {"anchors"}
    assert needs(cfg_with(kl={"coef": 0.1}).algorithm) == {"reference"}
