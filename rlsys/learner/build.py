"""Loading and sharding the learner's models: attention implementation, activation checkpointing,
mixed precision (FSDP2 MixedPrecisionPolicy: bf16 compute, fp32 master weights and gradient
reduction). The reference server loads through load_causal_lm too, so it follows the learner.

GPU paths (flash_attention_2, bf16 on CUDA) are written against the documented transformers and
torch APIs and have never run here (no GPU); on CPU, bf16 is used only when the CPU does bf16
natively (cpu_bf16_native).
"""

from __future__ import annotations

import torch
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from transformers import AutoModelForCausalLM

from rlsys.learner.logprobs import DTYPES, install_logprob_head
from rlsys.learner.packing import resolve_attn_implementation

MIXED_PRECISION = ("auto", "float32", "bfloat16")  # learner.mixed_precision


def cpu_bf16_native() -> bool:
    """The CPU has bf16 arithmetic (AVX512-BF16 / AMX), as oneDNN reports it; otherwise bf16 is emulated."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def compute_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """learner.mixed_precision -> the dtype parameters are cast to for compute (None: as stored)."""
    if mode == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if mode == "bfloat16":
        if device.type == "cpu" and not cpu_bf16_native():
            raise ValueError("learner.mixed_precision=bfloat16: this CPU has no native bf16 (no AVX512-BF16/AMX); "
                             "use auto or float32")
        return torch.bfloat16
    return None


def mixed_precision_policy(mode: str, device: torch.device) -> MixedPrecisionPolicy:
    """bf16 compute with fp32 gradient reduction (the sharded master weights keep model.dtype)."""
    dtype = compute_dtype(mode, device)
    if dtype is None:
        return MixedPrecisionPolicy()
    return MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32)


def load_causal_lm(path: str, dtype: str, learner_cfg, device, checkpointing: bool = False):
    """A causal LM with the log-prob head, attention chosen by learner.attn_implementation."""
    attn = resolve_attn_implementation(learner_cfg.attn_implementation, device, learner_cfg.packed)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[dtype], attn_implementation=attn)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return install_logprob_head(model).to(device)


def shard(model: torch.nn.Module, layers, policy: MixedPrecisionPolicy) -> torch.nn.Module:
    """One FSDP unit per decoder layer, the root holds the rest. A LoRA layer's frozen base and its
    adapters share the unit (one all-gather): FSDP2 keeps gradients and reduce-scatters for the
    trainable parameters only."""
    for layer in layers:
        fully_shard(layer, mp_policy=policy)
    return fully_shard(model, mp_policy=policy)


def build_policy(path: str, cfg, device: torch.device) -> torch.nn.Module:
    """The policy to train: the whole model, or a frozen base with LoRA adapters (learner.lora.rank > 0)."""
    lc = cfg.learner
    model = load_causal_lm(path, cfg.model.dtype, lc, device, lc.activation_checkpointing)
    if lc.lora.rank > 0:
        from rlsys.learner.lora import add_adapters

        model = add_adapters(model, lc.lora)
    return shard(model, model.model.layers, mixed_precision_policy(lc.mixed_precision, device))
