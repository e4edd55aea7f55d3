"""LoRA adapters on the learner's policy (learner.lora), with PEFT.

PEFT's low-level `inject_adapter_in_model` puts LoRA layers into the HF model itself (no
PeftModel wrapper), so every name outside the adapted linears stays the HF checkpoint's and the
rest of the learner (FSDP2, the log-prob head, checkpoints) sees a plain causal LM. The base is
frozen; adapters share their decoder layer's FSDP2 unit, and FSDP2 keeps gradients and
reduce-scatters for them only; the optimizer holds them alone. Adapters may keep another dtype
than the base (PEFT keeps them fp32 over a bf16 base).

Names: an adapted linear `X` holds `X.base_layer.weight` and `X.lora_A.default.weight` /
`X.lora_B.default.weight`. On the wire (adapter sync) and in a saved PEFT adapter the adapter's
name is dropped: `X.lora_A.weight`, as PEFT's own adapter files spell it.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import torch

ADAPTER = "default"  # PEFT's adapter name inside the model


def peft_config(lora):
    from peft import LoraConfig

    return LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=list(lora.target_modules), bias="none", task_type="CAUSAL_LM")


def add_adapters(model: torch.nn.Module, lora) -> torch.nn.Module:
    """Inject LoRA layers (B = 0: the model is unchanged until the first step) and freeze the rest."""
    from peft import inject_adapter_in_model

    model = inject_adapter_in_model(peft_config(lora), model, adapter_name=ADAPTER)
    if not lora_layers(model):
        raise ValueError(f"learner.lora.target_modules={list(lora.target_modules)} matched no linear layer of the model")
    for name, p in model.named_parameters():
        p.requires_grad_(is_adapter(name))
    return model


def lora_layers(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """HF module name -> its PEFT LoRA layer."""
    from peft.tuners.lora import LoraLayer

    return {n: m for n, m in model.named_modules() if isinstance(m, LoraLayer)}


def is_adapter(name: str) -> bool:
    """An adapter tensor's name, in the model (`X.lora_A.default.weight`) or on the wire (`X.lora_A.weight`)."""
    return ".lora_A." in name or ".lora_B." in name


def merge(base: torch.Tensor, a: torch.Tensor, b: torch.Tensor, scaling: float) -> torch.Tensor:
    """base + scaling * B @ A, in fp32, returned in base's dtype (a new tensor)."""
    return (base.float() + scaling * (b.float() @ a.float())).to(base.dtype)


def wire_name(name: str) -> str:
    """`X.lora_A.default.weight` -> `X.lora_A.weight` (PEFT's file names; what the engines receive)."""
    return name.replace(f".lora_A.{ADAPTER}.", ".lora_A.").replace(f".lora_B.{ADAPTER}.", ".lora_B.")


def scale(lora) -> float:
    return lora.alpha / lora.rank


@contextmanager
def adapters_disabled(model: torch.nn.Module):
    """The base model: every LoRA layer passes its input through the frozen linear only (the reference)."""
    layers = list(lora_layers(model).values())
    trainable = {p: p.requires_grad for p in model.parameters()}  # PEFT's switch also flips requires_grad
    for m in layers:
        m.enable_adapters(False)
    try:
        yield model
    finally:
        for m in layers:
            m.enable_adapters(True)
        for p, flag in trainable.items():
            p.requires_grad_(flag)


def adapter_params(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """(wire name, parameter) of every adapter tensor, the same list on every rank."""
    return [(wire_name(n), p) for n, p in model.named_parameters() if is_adapter(n)]


class MergedWeight:
    """`X.weight` of an adapted linear as the engines should serve it: base + scale * B @ A, computed
    in a new tensor (the learner's own weights are never merged, so nothing drifts). It looks like a
    parameter to the sync's bucket planner (shape, dtype, numel) and gathers like one (full_tensor,
    a collective under FSDP2: every rank calls it)."""

    def __init__(self, layer, scaling: float):
        self.base, self.a, self.b = layer.base_layer.weight, layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight
        self.scaling, self.shape, self.dtype = scaling, self.base.shape, self.base.dtype

    def numel(self) -> int:
        return self.base.numel()

    @torch.no_grad()
    def full_tensor(self) -> torch.Tensor:
        return merge(*(t.full_tensor() if hasattr(t, "full_tensor") else t for t in (self.base, self.a, self.b)),
                     self.scaling)


def merged_params(model: torch.nn.Module, scaling: float) -> list[tuple[str, MergedWeight]]:
    """(HF name, merged weight) of every adapted linear: what a merged sync sends (the rest is frozen and
    the engines hold it from the checkpoint)."""
    return [(f"{n}.weight", MergedWeight(m, scaling)) for n, m in lora_layers(model).items()]


def merged_state_dict(full: dict[str, torch.Tensor], scaling: float) -> dict[str, torch.Tensor]:
    """An HF state dict (as the base checkpoint names it) from a full state dict of the adapted model."""
    out = {}
    for name, t in full.items():
        if is_adapter(name):
            continue
        if name.endswith(".base_layer.weight"):
            stem = name[:-len(".base_layer.weight")]
            out[f"{stem}.weight"] = merge(t, full[f"{stem}.lora_A.{ADAPTER}.weight"],
                                          full[f"{stem}.lora_B.{ADAPTER}.weight"], scaling)
        else:
            out[name.replace(".base_layer.", ".")] = t
    return out


def save_adapter(full: dict[str, torch.Tensor], lora, base_path: str, path: str) -> None:
    """A PEFT adapter directory (adapter_config.json + adapter_model.safetensors) that
    `peft.PeftModel.from_pretrained(base, path)` and vLLM's LoRARequest both load."""
    from safetensors.torch import save_file

    Path(path).mkdir(parents=True, exist_ok=True)
    tensors = {f"base_model.model.{wire_name(n)}": t.contiguous() for n, t in full.items() if is_adapter(n)}
    save_file(tensors, str(Path(path) / "adapter_model.safetensors"))
    config = peft_config(lora)
    config.base_model_name_or_path = base_path
    config.save_pretrained(path)
