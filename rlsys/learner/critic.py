"""The PPO critic: the policy's transformer body with a scalar value head, sharded like the policy."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed.fsdp import fully_shard
from transformers import AutoModel


class ValueModel(nn.Module):
    """V(state before token t) for every position t, aligned with token_logprobs (position 0 gets 0)."""

    def __init__(self, model_path: str, dtype: torch.dtype):
        super().__init__()
        self.body = AutoModel.from_pretrained(model_path, dtype=dtype)  # the checkpoint minus its LM head
        self.head = nn.Linear(self.body.config.hidden_size, 1, dtype=dtype)
        nn.init.zeros_(self.head.weight)  # start at V = 0: GAE begins as plain return-to-go
        nn.init.zeros_(self.head.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.body(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        values = self.head(hidden[:, :-1]).squeeze(-1).float()
        return nn.functional.pad(values, (1, 0))

    def shard(self) -> "ValueModel":
        for layer in self.body.layers:
            fully_shard(layer)
        fully_shard(self)
        return self
