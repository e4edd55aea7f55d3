"""Sync parity on the real model (SmolLM2-135M-Instruct: Llama, tied 49k-token embedding, 30 layers,
eight 64 MB buckets), when its converted checkpoint is on this machine (ENVIRONMENT.md);
RLSYS_REAL_MODEL points at another HF checkpoint directory. One engine for the module."""

import os
from pathlib import Path

import pytest
import ray
import torch

from rlsys.config import RLSysConfig
from tests.integration.test_sync_direct import perturb, sync


DEFAULT = "/root/.cache/rlsys/gguf-SmolLM2-135M-Instruct.Q4_1-b179c9523d0e"
MODEL = os.environ.get("RLSYS_REAL_MODEL", DEFAULT)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    if not (Path(MODEL) / "config.json").exists():
        pytest.skip(f"no converted real model at {MODEL}")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlsys.rollout.worker import RolloutWorker, engine_spec

    cfg = RLSysConfig()
    cfg.run_dir, cfg.rollout.max_model_len = str(tmp_path_factory.mktemp("run")), 256
    ray.init(address="local", num_cpus=2, include_dashboard=False,  # our own cluster, not a running one
             runtime_env={"env_vars": {"VLLM_CPU_KVCACHE_SPACE": "1"}})
    actor = ray.remote(RolloutWorker).options(num_cpus=1).remote(engine_spec(cfg, MODEL))
    ray.get(actor.get_version.remote())
    tok = AutoTokenizer.from_pretrained(MODEL)
    prompts = [tok(t, add_special_tokens=False)["input_ids"] for t in ("What is 17 + 25?", "The capital of France is")]
    yield cfg, actor, AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32).eval(), prompts
    ray.shutdown()


@torch.no_grad()
def max_logprob_diff(actor, model, prompts) -> float:
    out = ray.get(actor.generate.remote(prompts, seeds=[1, 2], n=2, temperature=1.0, top_p=1.0, max_tokens=6))
    diffs = []
    for i, (resp, beh) in enumerate(zip(out.response_token_ids, out.behaviour_logprobs)):
        prompt, resp = prompts[i // 2], torch.as_tensor(resp.copy())
        lp = torch.log_softmax(model(input_ids=torch.tensor([prompt + resp.tolist()])).logits[0].double(), -1)
        diffs.append(float((lp[len(prompt) - 1:-1][torch.arange(len(resp)), resp].numpy() - beh).__abs__().max()))
    return max(diffs)


# layerwise first, on a fresh engine; plain last (rollout.cpu_gemm=plain: linears stay plain once converted)
@pytest.mark.parametrize("mode", ["layerwise", "direct", "plain"])
def test_repeated_syncs_match_the_sender(engine, mode):
    cfg, actor, model, prompts = engine
    ray.get(actor.set_sync_mode.remote(mode))
    for seed in (1, 2, 3, 4):
        perturb(model, scale=0.02, seed=seed)
        out = sync(cfg, actor, model, seed, cpu_gemm="plain" if mode == "plain" else "packed")
        paths = out.engine_paths
        if mode == "plain" and seed > 1:  # converted by the first sync: the sender writes the weights itself
            assert paths == {"written_by_sender": len(list(model.parameters()))}
        else:
            assert out.buckets > 4 and paths[mode if mode == "layerwise" else "in_place"] > 0
        assert max_logprob_diff(actor, model, prompts) < 1e-4  # fp32: oneDNN vs torch kernels
