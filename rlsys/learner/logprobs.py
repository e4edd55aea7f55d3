"""Per-token log-probabilities of response tokens: one function for learner and reference alike."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}  # model.dtype -> torch dtype


def pack(prompt_ids: list[np.ndarray], response_ids: list[np.ndarray], pad_id: int):
    """Right-padded input ids, attention mask and a mask over the response positions."""
    lengths = [len(p) + len(r) for p, r in zip(prompt_ids, response_ids)]
    width = max(lengths)
    n = len(lengths)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    response_mask = torch.zeros((n, width), dtype=torch.bool)
    for i, (p, r) in enumerate(zip(prompt_ids, response_ids)):
        seq = np.concatenate([p, r])
        input_ids[i, : len(seq)] = torch.from_numpy(seq.astype(np.int64))
        attention[i, : len(seq)] = 1
        response_mask[i, len(p) : len(seq)] = True
    return input_ids, attention, response_mask


def pad_per_token(values: list[np.ndarray], response_mask: torch.Tensor) -> torch.Tensor:
    """Place ragged per-response-token values at their response positions (zeros elsewhere)."""
    out = torch.zeros(response_mask.shape, dtype=torch.float32)
    for i, v in enumerate(values):
        out[i, response_mask[i]] = torch.tensor(np.asarray(v, dtype=np.float32))  # copy: Ray arrays are read-only
    return out


class TokenLogprobs(NamedTuple):
    logp: torch.Tensor  # [B, L] log pi(x_t | x_<t); 0 where not computed (position 0, prompt, padding)
    entropy: torch.Tensor | None  # [B, L] entropy of the next-token distribution at t-1
    logp_proxy: torch.Tensor | None  # [B, L] Lp-Reg proxy log-prob of x_t, detached (-inf: filtered)


# Tokens per chunk of the LM head: a chunk holds a few [chunk, vocab] fp32 tensors (logits,
# log-softmax and their grads), so this bounds the head's memory at ~4 x 128 MiB for any vocab.
CHUNK_ELEMENTS = 1 << 25


class LogprobHead(nn.Module):
    """The LM head, answering per-token log-probs of given targets instead of full logits.

    Installed in place of the model's output layer (sharing its weight, tied or not), so the
    model's own forward (and FSDP's unsharding around it) runs unchanged; `request` names the
    targets and positions. Only the requested positions go through the vocabulary projection,
    in chunks, each recomputed in the backward pass (activation checkpointing): no [B, L, V]
    tensor exists at any time. Without a request it is the plain linear head (logits).
    """

    def __init__(self, head: nn.Linear):
        super().__init__()
        self.weight, self.bias = head.weight, head.bias
        self.request: dict | None = None

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.request is None:
            return nn.functional.linear(hidden, self.weight, self.bias)
        r = self.request
        where = r["positions"][:, 1:]  # log-prob of x_t comes from the hidden state at t-1
        h, target = hidden[:, :-1][where], r["input_ids"][:, 1:][where]
        chunk = max(1, CHUNK_ELEMENTS // self.weight.shape[0])
        parts = []
        for i in range(0, len(h), chunk):
            args = (h[i:i + chunk], target[i:i + chunk], r["temperature"], r["with_entropy"], r["proxy_kappa"])
            if torch.is_grad_enabled():
                parts.append(checkpoint(self._chunk, *args, use_reentrant=False))
            else:
                parts.append(self._chunk(*args))
        cols = torch.cat(parts) if parts else hidden.new_zeros((0, 3), dtype=torch.float32)
        out = hidden.new_zeros((*hidden.shape[:2], 3), dtype=torch.float32)
        out[:, 1:][where] = cols
        return out

    def _chunk(self, h, target, temperature: float, with_entropy: bool, proxy_kappa: float | None):
        logits = nn.functional.linear(h, self.weight, self.bias).float()
        if temperature != 1.0:
            logits = logits / temperature
        logp_all = torch.log_softmax(logits, dim=-1)
        logp = torch.gather(logp_all, -1, target[:, None]).squeeze(-1)
        zeros = torch.zeros_like(logp)
        entropy = -(logp_all.exp() * logp_all).sum(-1) if with_entropy else zeros
        proxy = (_proxy_logprob(logp_all.detach(), target[:, None], proxy_kappa).detach()
                 if proxy_kappa is not None else zeros)
        return torch.stack([logp, entropy, proxy], dim=-1)


def install_logprob_head(model: nn.Module) -> nn.Module:
    """Swap the model's output layer for a LogprobHead (before sharding: FSDP sees one weight)."""
    head = model.get_output_embeddings()
    if not isinstance(head, LogprobHead):
        model.set_output_embeddings(LogprobHead(head))
    return model


def token_logprobs(model, input_ids, attention, temperature: float, with_entropy: bool = False,
                   proxy_kappa: float | None = None, positions: torch.Tensor | None = None,
                   **model_kwargs) -> TokenLogprobs:
    """log pi(x_t | x_<t) at the positions asked for (default: every t >= 1), logits scaled by 1/T.

    The rollout engine samples from softmax(logits / T), so the learner scores the same
    distribution; otherwise behaviour and learner log-probs disagree by construction. The model
    must carry a LogprobHead (install_logprob_head). model_kwargs go to the model's forward
    (position_ids and sequence boundaries of packed rows: learner/packing.py).
    """
    head = model.get_output_embeddings()
    if positions is None:
        positions = attention.bool() if attention is not None else torch.ones_like(input_ids, dtype=torch.bool)
    head.request = {"input_ids": input_ids, "positions": positions.bool(), "temperature": temperature,
                    "with_entropy": with_entropy, "proxy_kappa": proxy_kappa}
    try:
        out = model(input_ids=input_ids, attention_mask=attention, **model_kwargs).logits
    finally:
        head.request = None
    proxy = out[..., 2].masked_fill(~positions, 0.0) if proxy_kappa is not None else None
    return TokenLogprobs(out[..., 0], out[..., 1] if with_entropy else None, proxy)


def _proxy_logprob(logp_all: torch.Tensor, target: torch.Tensor, kappa: float) -> torch.Tensor:
    """Lp-Reg proxy: pi with tokens below kappa * max-prob removed, renormalised; log-prob of target."""
    kept = logp_all >= logp_all.max(-1, keepdim=True).values + math.log(kappa)
    log_z = torch.logsumexp(logp_all.masked_fill(~kept, -math.inf), -1)
    tok = torch.gather(logp_all, -1, target).squeeze(-1)
    return torch.where(torch.gather(kept, -1, target).squeeze(-1), tok - log_z, torch.full_like(tok, -math.inf))


def unpad_per_token(values: torch.Tensor, response_mask: torch.Tensor) -> list[np.ndarray]:
    return [values[i, response_mask[i]].detach().cpu().float().numpy() for i in range(values.shape[0])]
