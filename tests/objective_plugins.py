"""A user's own objective, outside the package: CISPO (MiniMax 2025), loaded with
algorithm.modules=[tests.objective_plugins]. Shown in docs/algorithms.md.

CISPO keeps every token's gradient: the importance weight is clipped and detached, and it
multiplies A * logp, so a clipped token still learns (the PPO clip would zero its gradient).
"""

import torch

from rlsys.learner.losses import LossInputs, register_policy_loss
from rlsys.learner.spec import Stat


@register_policy_loss("cispo", knobs=("clip_low", "clip_high"),
                      stats=(Stat("cispo_clipped", per_token=True, metric="cispo_clip_frac"),))
def cispo(x: LossInputs, clip_low: float, clip_high: float):
    """L_t = -sg(clip(rho_t, 1 - eps_low, 1 + eps_high)) * A_t * logp_t."""
    ratio = torch.exp(x.logp - x.logp_old).detach()
    weight = torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    clipped = ((weight != ratio) & x.mask).float().sum().item()
    return -weight * x.advantages * x.logp, {"cispo_clipped": clipped}
