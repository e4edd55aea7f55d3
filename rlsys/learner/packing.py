"""Model inputs of one micro-batch, padded or packed, and their per-response-token log-probs.

Padded: one right-padded row per sample ([B, L], attention mask). Packed (padding-free): every
sample's prompt + response concatenated into one row [1, N] with position ids that restart at 0
for each sample and cumulative sequence boundaries (cu_seq_lens); attention never crosses a
boundary. Both answer in one layout, [B, R] (R = the longest response of the micro-batch), so
the objective's code does not depend on how the model was fed.

Attention on packed rows: flash_attention_2 (GPU) reads the boundaries and runs its varlen
kernels; `sdpa` runs SDPA once per sample on its own slice (VARLEN_SDPA below, registered with
transformers); `eager` uses transformers' block-diagonal causal mask built from the position ids.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.nn import functional as F
from transformers import AttentionInterface

from rlsys.learner.logprobs import TokenLogprobs, token_logprobs

VARLEN_SDPA = "rlsys_varlen_sdpa"  # attention of packed rows on CPU/any device: SDPA per sample
ATTN_IMPLEMENTATIONS = ("auto", "flash_attention_2", "sdpa", "eager")  # learner.attn_implementation


@dataclass
class ModelInputs:
    input_ids: torch.Tensor  # [B, L] padded or [1, N] packed
    attention_mask: torch.Tensor | None  # [B, L] padded; None packed
    position_ids: torch.Tensor | None  # [1, N] packed: 0, 1, ... restarting with each sample
    cu_seq_lens: torch.Tensor | None  # [B + 1] int32 packed: sample boundaries in the row
    max_length: int  # longest sample (prompt + response)
    positions: torch.Tensor  # bool, shaped like input_ids: the response tokens (targets of the log-probs)
    index: torch.Tensor  # [B, R] long: where each response token sits in input_ids.view(-1)
    mask: torch.Tensor  # [B, R] bool: real response tokens (the rest of the row is filler)

    @property
    def packed(self) -> bool:
        return self.position_ids is not None

    @property
    def num_tokens(self) -> int:
        """Tokens the model runs over, filler included."""
        return int(self.input_ids.numel())

    def model_kwargs(self) -> dict:
        """Forward arguments. No KV cache: with one, transformers would not see the packed rows in
        the position ids (and eager/sdpa would attend across samples)."""
        if not self.packed:
            return {"attention_mask": self.attention_mask, "use_cache": False}
        return {"attention_mask": None, "use_cache": False, "position_ids": self.position_ids,
                "cu_seq_lens_q": self.cu_seq_lens,
                "cu_seq_lens_k": self.cu_seq_lens, "max_length_q": self.max_length, "max_length_k": self.max_length}

    def to_responses(self, values: torch.Tensor) -> torch.Tensor:
        """[rows, L] values at model positions -> [B, R] values of the response tokens, 0 elsewhere."""
        picked = values.reshape(-1)[self.index]
        return torch.where(self.mask, picked, torch.zeros_like(picked))

    def to(self, device) -> "ModelInputs":
        moved = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in self.__dict__.items()}
        return replace(self, **moved)


def _response_index(starts: list[int], lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max([1, *lengths])
    steps = torch.arange(width)
    mask = steps[None, :] < torch.tensor(lengths)[:, None]
    index = torch.where(mask, torch.tensor(starts)[:, None] + steps[None, :], torch.zeros((), dtype=torch.long))
    return index, mask


def padded_inputs(prompt_ids: list[np.ndarray], response_ids: list[np.ndarray], pad_id: int) -> ModelInputs:
    """One right-padded row per sample."""
    seqs = [np.concatenate([p, r]).astype(np.int64) for p, r in zip(prompt_ids, response_ids)]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    positions = torch.zeros((len(seqs), width), dtype=torch.bool)
    for i, (seq, p) in enumerate(zip(seqs, prompt_ids)):
        ids[i, :len(seq)] = torch.from_numpy(seq)
        attn[i, :len(seq)] = 1
        positions[i, len(p):len(seq)] = True
    index, mask = _response_index([i * width + len(p) for i, p in enumerate(prompt_ids)],
                                  [len(r) for r in response_ids])
    return ModelInputs(ids, attn, None, None, width, positions, index, mask)


def packed_inputs(prompt_ids: list[np.ndarray], response_ids: list[np.ndarray]) -> ModelInputs:
    """All samples in one row, no filler: position ids restart per sample, boundaries in cu_seq_lens."""
    if any(len(p) == 0 for p in prompt_ids):
        raise ValueError("packing needs a prompt of at least one token per sample")
    seqs = [np.concatenate([p, r]).astype(np.int64) for p, r in zip(prompt_ids, response_ids)]
    lengths = [len(s) for s in seqs]
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    ids = torch.from_numpy(np.concatenate(seqs))[None]
    position_ids = torch.from_numpy(np.concatenate([np.arange(n) for n in lengths]))[None]
    positions = torch.zeros_like(ids, dtype=torch.bool)
    for start, end, p in zip(bounds[:-1], bounds[1:], prompt_ids):
        positions[0, start + len(p):end] = True
    index, mask = _response_index([int(b) + len(p) for b, p in zip(bounds[:-1], prompt_ids)],
                                  [len(r) for r in response_ids])
    cu = torch.from_numpy(bounds.astype(np.int32))
    return ModelInputs(ids, None, position_ids, cu, max(lengths), positions, index, mask)


def model_inputs(prompt_ids, response_ids, pad_id: int, packed: bool) -> ModelInputs:
    return packed_inputs(prompt_ids, response_ids) if packed else padded_inputs(prompt_ids, response_ids, pad_id)


def response_logprobs(model, inputs: ModelInputs, temperature: float, with_entropy: bool = False,
                      proxy_kappa: float | None = None) -> TokenLogprobs:
    """token_logprobs of the response tokens, in the [B, R] layout (inputs.mask marks the real ones)."""
    kw = inputs.model_kwargs()
    out = token_logprobs(model, inputs.input_ids, kw.pop("attention_mask"), temperature, with_entropy=with_entropy,
                         proxy_kappa=proxy_kappa, positions=inputs.positions, **kw)
    return TokenLogprobs(*(None if t is None else inputs.to_responses(t) for t in out))


# ---- attention ---------------------------------------------------------------------------------
def varlen_sdpa(module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None,
                is_causal: bool | None = None, cu_seq_lens_q: torch.Tensor | None = None, **kwargs):
    """Causal SDPA over each sample's slice of a packed row ([1, heads, N, dim]); without boundaries
    (a padded or single-sequence batch) plain causal SDPA, which is exact for right padding."""
    bounds = [0, query.shape[2]] if cu_seq_lens_q is None else cu_seq_lens_q.tolist()
    gqa = query.shape[1] != key.shape[1]
    outs = [F.scaled_dot_product_attention(query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], dropout_p=dropout,
                                           is_causal=True, scale=scaling, enable_gqa=gqa)
            for s, e in zip(bounds[:-1], bounds[1:])]
    out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(VARLEN_SDPA, varlen_sdpa)


def flash_attn_available() -> bool:
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_attn_implementation(name: str, device: torch.device | str, packed: bool) -> str:
    """learner.attn_implementation -> the name transformers loads the model with.

    auto: flash_attention_2 on CUDA when flash-attn imports, else sdpa. sdpa on packed rows is
    VARLEN_SDPA (transformers' own sdpa would attend over a dense N x N block-diagonal mask).
    """
    if name not in ATTN_IMPLEMENTATIONS:
        raise ValueError(f"learner.attn_implementation: unknown {name!r}; known: {ATTN_IMPLEMENTATIONS}")
    cuda = torch.device(device).type == "cuda"
    if name == "auto":
        name = "flash_attention_2" if cuda and flash_attn_available() else "sdpa"
    if name == "flash_attention_2" and not (cuda and flash_attn_available()):
        raise ValueError("learner.attn_implementation=flash_attention_2 needs a CUDA device and the flash-attn "
                         "package; use auto or sdpa")
    return VARLEN_SDPA if name == "sdpa" and packed else name
