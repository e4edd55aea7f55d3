"""The PPO critic: the policy's transformer body with a scalar value head, sharded like the policy."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from transformers import AutoModel


class ValueModel(nn.Module):
    """V(state before token t) for every position t, aligned with token_logprobs (position 0 gets 0)."""

    def __init__(self, model_path: str, dtype: torch.dtype, attn_implementation: str = "sdpa"):
        super().__init__()
        # the checkpoint minus its LM head, with the policy's attention (learner/build.py)
        self.body = AutoModel.from_pretrained(model_path, dtype=dtype, attn_implementation=attn_implementation)
        self.head = nn.Linear(self.body.config.hidden_size, 1, dtype=dtype)
        nn.init.zeros_(self.head.weight)  # start at V = 0: GAE begins as plain return-to-go
        nn.init.zeros_(self.head.bias)

    def forward(self, inputs) -> torch.Tensor:
        """Values at the positions of inputs (learner/packing.py ModelInputs: padded or packed rows)."""
        hidden = self.body(input_ids=inputs.input_ids, **inputs.model_kwargs()).last_hidden_state
        values = self.head(hidden[:, :-1]).squeeze(-1).float()
        return nn.functional.pad(values, (1, 0))

    def shard(self, policy: MixedPrecisionPolicy | None = None) -> "ValueModel":
        policy = policy or MixedPrecisionPolicy()
        for layer in self.body.layers:
            fully_shard(layer, mp_policy=policy)
        fully_shard(self, mp_policy=policy)
        return self
