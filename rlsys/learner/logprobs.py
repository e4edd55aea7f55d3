"""Per-token log-probabilities of response tokens: one function for learner and reference alike."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch


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
    logp: torch.Tensor  # [B, L] log pi(x_t | x_<t); position 0 holds 0
    entropy: torch.Tensor | None  # [B, L] entropy of the next-token distribution at t-1
    logp_proxy: torch.Tensor | None  # [B, L] Lp-Reg proxy log-prob of x_t, detached (-inf: filtered)


def token_logprobs(model, input_ids, attention, temperature: float, with_entropy: bool = False,
                   proxy_kappa: float | None = None) -> TokenLogprobs:
    """log pi(x_t | x_<t) at every position t >= 1 (position 0 gets 0), logits scaled by 1/T.

    The rollout engine samples from softmax(logits / T), so the learner scores the same
    distribution; otherwise behaviour and learner log-probs disagree by construction.
    """
    logits = model(input_ids=input_ids, attention_mask=attention).logits[:, :-1].float()
    if temperature != 1.0:
        logits = logits / temperature
    logp_all = torch.log_softmax(logits, dim=-1)
    target = input_ids[:, 1:].unsqueeze(-1)
    logp = torch.nn.functional.pad(torch.gather(logp_all, -1, target).squeeze(-1), (1, 0))
    entropy = proxy = None
    if with_entropy:
        entropy = torch.nn.functional.pad(-(logp_all.exp() * logp_all).sum(-1), (1, 0))
    if proxy_kappa is not None:
        proxy = torch.nn.functional.pad(_proxy_logprob(logp_all.detach(), target, proxy_kappa), (1, 0))
    return TokenLogprobs(logp, entropy, proxy)


def _proxy_logprob(logp_all: torch.Tensor, target: torch.Tensor, kappa: float) -> torch.Tensor:
    """Lp-Reg proxy: pi with tokens below kappa * max-prob removed, renormalised; log-prob of target."""
    kept = logp_all >= logp_all.max(-1, keepdim=True).values + math.log(kappa)
    log_z = torch.logsumexp(logp_all.masked_fill(~kept, -math.inf), -1)
    tok = torch.gather(logp_all, -1, target).squeeze(-1)
    return torch.where(torch.gather(kept, -1, target).squeeze(-1), tok - log_z, torch.full_like(tok, -math.inf))


def unpad_per_token(values: torch.Tensor, response_mask: torch.Tensor) -> list[np.ndarray]:
    return [values[i, response_mask[i]].detach().cpu().float().numpy() for i in range(values.shape[0])]
