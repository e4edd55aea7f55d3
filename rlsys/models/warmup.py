"""Supervised warm-up: teach the tiny base model the task's format and some of its skill.

RL needs a policy that solves some problems and fails others; this short phase gets there from
random weights, and is cached so repeated runs start from the same base model.
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F


def encode_pairs(tokenizer, rows: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded input ids and a loss mask that covers the answer and its <eos>."""
    seqs, masks = [], []
    for row in rows:
        p = tokenizer.encode(row["prompt"], add_special_tokens=False)
        a = tokenizer.encode(row["ground_truth"], add_special_tokens=False) + [tokenizer.eos_token_id]
        seqs.append(p + a)
        masks.append([0] * len(p) + [1] * len(a))
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.float32)
    for i, (s, m) in enumerate(zip(seqs, masks)):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(m)] = torch.tensor(m, dtype=torch.float32)
    return ids, mask


def supervised_warmup(model, tokenizer, rows: list[dict], steps: int, lr: float, seed: int,
                      batch_size: int = 128, log=print) -> list[float]:
    rng = random.Random(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20))
    model.train()
    losses = []
    for step in range(steps):
        ids, mask = encode_pairs(tokenizer, rng.sample(rows, min(batch_size, len(rows))))
        logits = model(input_ids=ids).logits[:, :-1]
        nll = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
        loss = (nll * mask[:, 1:]).sum() / mask[:, 1:].sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if log and (step + 1) % 100 == 0:
            log(f"warm-up step {step + 1}/{steps}  loss {sum(losses[-100:]) / len(losses[-100:]):.3f}")
    model.eval()
    return losses
