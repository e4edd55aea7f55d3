"""LoRA adapters synced into a vLLM worker from memory (learner.lora without merge).

A sync's adapter tensors (PEFT names: `X.lora_A.weight`, rlsys/learner/lora.py) arrive in its buckets
and are registered when the sync finishes: built with vLLM's own LoRAModel.from_lora_tensors and
added through the model runner under a new id and a new name per version (vLLM's prefix-cache key
holds the name), then the previous adapter is removed. vLLM's manager loads an adapter it does not
hold from `lora_path` (on first use, or after an eviction); the worker's loader is hooked to build
registered ids from memory instead, so no adapter ever touches the disk. The last two versions stay
in that registry: a request still naming the previous one is re-added from memory rather than
failing the engine on a path that does not exist.

What the worker serves is read back from the LoRA layers' slots (lora_a_stacked / lora_b_stacked,
where vLLM folds alpha / r into B) for checksums (rlsys/sync/check.py).
"""

from __future__ import annotations

import torch

PREFIX = "base_model.model."  # PEFT's file names, which vLLM's LoRA loader expects
ALLOWED_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vLLM's max_lora_rank values


def max_lora_rank(rank: int) -> int:
    return next(r for r in ALLOWED_RANKS if r >= rank)


class AdapterRegistry:
    """Per vLLM worker: adapters by id (name, tensors, PEFT config), the active one, the next id."""

    def __init__(self, runner):
        self.runner, self.entries, self.active, self.next_id = runner, {}, None, 1
        manager = runner.lora_manager
        if manager is None:
            raise RuntimeError("an adapter sync reached an engine started without LoRA (enable_lora)")
        disk_load = manager._load_adapter

        def load(request):  # vLLM calls this for an id it does not hold
            entry = self.entries.get(request.lora_int_id)
            return disk_load(request) if entry is None else self._build(request.lora_int_id, entry)

        manager._load_adapter = load

    def register(self, tensors: dict[str, torch.Tensor], config: dict, version: int) -> dict:
        """Add the new version's adapter and activate it; remove the previous one. -> {name, id}."""
        from vllm.lora.request import LoRARequest

        if config["r"] > self.runner.lora_manager.lora_config.max_lora_rank:
            raise ValueError(f"adapter rank {config['r']} > the engine's max_lora_rank")
        lora_id, self.next_id = self.next_id, self.next_id + 1
        name = f"policy-v{version}-{lora_id}"
        self.entries[lora_id] = (name, {PREFIX + n: t for n, t in tensors.items()}, config)
        self.runner.add_lora(LoRARequest(name, lora_id, lora_path=name))
        previous, self.active = self.active, lora_id
        if previous is not None:
            self.runner.remove_lora(previous)
        for old in [i for i in self.entries if i not in (previous, lora_id)]:
            del self.entries[old]  # keep two: requests naming the previous one re-add it from memory
        return {"name": name, "id": lora_id}

    def _build(self, lora_id: int, entry):
        from vllm.lora.lora_model import LoRAModel
        from vllm.lora.peft_helper import PEFTHelper

        manager = self.runner.lora_manager
        _, tensors, config = entry
        helper = PEFTHelper.from_dict({**config, "vllm_max_position_embeddings": manager.max_position_embeddings})
        helper.validate_legal(manager.lora_config)
        model = manager._adapter_manager.model
        mapper = getattr(model, "hf_to_vllm_mapper", None)
        # clones: vLLM scales B by alpha / r in place
        return LoRAModel.from_lora_tensors(
            lora_model_id=lora_id, tensors={k: v.clone() for k, v in tensors.items()}, peft_helper=helper,
            device="cpu", dtype=manager.lora_config.lora_dtype, model_vocab_size=manager.vocab_size,
            weights_mapper=mapper.get_rename_mapper() if mapper is not None else None,
            skip_prefixes=getattr(model, "lora_skip_prefixes", None))

    def served_digests(self) -> dict[str, str]:
        """sha256 (rlsys/sync/check.py) of each tensor of the active adapter, where the worker's slots hold
        exactly it (A) or it scaled as vLLM scales it (B); a tensor the slots do not hold gets a marker.
        With tensor parallelism each worker holds a slice: then only what was registered is checksummed."""
        from rlsys.sync.check import tensor_digest

        if self.active is None:
            return {}
        _, tensors, config = self.entries[self.active]
        held = {n[len(PREFIX):]: t for n, t in tensors.items()}
        out = {n: tensor_digest(t) for n, t in held.items()}
        if self.runner.vllm_config.parallel_config.tensor_parallel_size > 1:
            return out
        scaling = config["lora_alpha"] / config["r"]
        for name, (a, b) in self._slots().items():
            for kind, got, want in (("A", a, held.get(f"{name}.lora_A.weight")),
                                    ("B", b, held.get(f"{name}.lora_B.weight"))):
                if want is None:
                    continue
                if kind == "B":
                    want = want.to(got.dtype).clone().mul_(scaling)  # vLLM's own fold, the same op
                r0, r1 = want.shape
                padded_zero = got[r0:].abs().sum() == 0 and got[:, r1:].abs().sum() == 0
                if not (torch.equal(got[:r0, :r1], want.to(got.dtype)) and padded_zero):
                    out[f"{name}.lora_{kind}.weight"] = "the engine's LoRA slot differs"
        return out

    def _slots(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """HF module name -> (A, B) slot of the active adapter, as the worker's LoRA layers hold them."""
        am = self.runner.lora_manager._adapter_manager
        slot = am.lora_index_to_id.index(self.active)
        out = {}
        for name, mod in am.modules.items():
            if not hasattr(mod, "lora_a_stacked"):
                continue
            for s, sub in enumerate(am.packed_modules.get(name, [name])):
                out[sub] = (mod.lora_a_stacked[s][slot, 0], mod.lora_b_stacked[s][slot, 0])
        return out
