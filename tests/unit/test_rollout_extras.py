"""Speculative decoding, weight-sync backends and colocation: config, planning and errors (no Ray)."""

from types import SimpleNamespace

import pytest
import torch

from rlsys.runtime.cluster import colocated, role_demands
from rlsys.config import ConfigError, RLSysConfig, get_key
from rlsys.config.validation import validate
from rlsys.models.tiny import build_char_tokenizer, build_tiny_model, save_checkpoint
from rlsys.rollout.engine_options import engine_options
from rlsys.rollout.speculative import prepare_speculative, read_counters, spec_metrics, speculative_config
from rlsys.sync.bucket import iter_buckets, plan_buckets
from rlsys.sync.native import engine_init_info, source_bytes, sync_source


def cfg_with(**kw) -> RLSysConfig:
    cfg = RLSysConfig()
    cfg.run_dir = kw.pop("run_dir", "/tmp/unused")
    for key, value in kw.items():
        *groups, name = key.split("__")  # cluster__rollout__gpus: cfg.cluster.rollout.gpus
        setattr(get_key(cfg, ".".join(groups)), name, value)
    return cfg


GPU = {"cluster__rollout__gpus": 0.5, "cluster__learner__gpus": 0.5}


@pytest.mark.parametrize("kw, key", [
    ({"rollout__speculative": "medusa"}, "rollout.speculative"),
    ({"rollout__speculative": "ngram", "rollout__num_speculative_tokens": 0}, "rollout.num_speculative_tokens"),
    ({"rollout__speculative": "draft"}, "rollout.draft_model"),
    ({"rollout__speculative": "eagle"}, "rollout.draft_model"),
    ({"rollout__speculative": "ngram", "rollout__draft_model": "/m"}, "rollout.draft_model"),
    ({"rollout__speculative": "eagle", "rollout__draft_model": "layers:2"}, "rollout.draft_model"),
    ({"rollout__speculative": "draft", "rollout__draft_model": "layers:x"}, "rollout.draft_model"),
    ({"rollout__speculative": "ngram", "rollout__draft_sync": True}, "rollout.draft_sync"),
    ({"rollout__sync_backend": "nccl"}, "rollout.sync_backend"),
    ({"rollout__sync_backend": "ipc", **GPU}, "rollout.sync_backend"),
    ({"rollout__sync_backend": "nccl", "cluster__colocate": True, **GPU}, "rollout.sync_backend"),
    ({"cluster__colocate": True}, "cluster.colocate"),
    ({"cluster__colocate": True, "cluster__rollout__gpus": 0.6, "cluster__learner__gpus": 0.6}, "cluster.colocate"),
    ({"cluster__colocate": True, "rollout__num_engines": 1, **GPU}, "cluster.colocate"),  # 2 learner ranks
])
def test_nonsense_combinations_name_the_key(kw, key):
    with pytest.raises(ConfigError, match=f"config key '{key}'"):
        validate(cfg_with(**kw))


def test_sensible_combinations_pass():
    validate(cfg_with(rollout__speculative="draft", rollout__draft_model="layers:2", rollout__draft_sync=True))
    validate(cfg_with(rollout__sync_backend="nccl", **GPU))
    validate(cfg_with(rollout__sync_backend="ipc", cluster__colocate=True, rollout__num_engines=2, **GPU))


def test_engine_options_map_the_knobs():
    assert engine_options(cfg_with(), "/m") == {}
    opts = engine_options(cfg_with(rollout__speculative="ngram", rollout__num_speculative_tokens=4), "/m")
    assert opts["speculative_config"]["method"] == "ngram" and opts["speculative_config"]["num_speculative_tokens"] == 4
    assert opts["disable_log_stats"] is False  # acceptance counters need the stat loggers
    opts = engine_options(cfg_with(rollout__sync_backend="ipc", cluster__colocate=True, **GPU), "/m")
    assert opts["weight_transfer_config"].backend == "ipc" and opts["enable_sleep_mode"] is True
    spec = speculative_config(cfg_with(run_dir="/runs/a", rollout__speculative="draft", rollout__draft_model="layers:2"), "/m")
    assert spec == {"method": "draft_model", "num_speculative_tokens": 3, "model": "/runs/a/draft-layers-2"}


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    tok = build_char_tokenizer()
    return str(save_checkpoint(build_tiny_model(32, 3, 2, len(tok)), tok, tmp_path_factory.mktemp("policy")))


def test_layer_draft_is_built_from_the_policy(policy, tmp_path):
    cfg = cfg_with(run_dir=str(tmp_path), rollout__speculative="draft", rollout__draft_model="layers:2",
                   rollout__draft_sync=True)
    prepare_speculative(cfg, policy)  # also checks the draft holds only policy tensors (draft_sync)
    cfg.rollout.sync_backend = "nccl"  # vLLM's engines stream every policy tensor into the draft
    with pytest.raises(ConfigError, match="config key 'rollout.draft_sync'.*must have all of them"):
        prepare_speculative(cfg, policy)
    from transformers import AutoModelForCausalLM

    draft = AutoModelForCausalLM.from_pretrained(tmp_path / "draft-layers-2")
    full = dict(AutoModelForCausalLM.from_pretrained(policy).named_parameters())
    assert draft.config.num_hidden_layers == 2
    assert all(torch.equal(p, full[n]) for n, p in draft.named_parameters())


@pytest.mark.parametrize("kw, key, match", [
    ({"rollout__speculative": "mtp"}, "rollout.speculative", "multi-token-prediction"),
    ({"rollout__speculative": "draft", "rollout__draft_model": "layers:3"}, "rollout.draft_model", "K must be in"),
    ({"rollout__speculative": "draft", "rollout__draft_model": "/nonexistent"}, "rollout.draft_model", "no config.json"),
])
def test_file_checks_name_the_key(policy, tmp_path, kw, key, match):
    with pytest.raises(ConfigError, match=f"config key '{key}'.*{match}"):
        prepare_speculative(cfg_with(run_dir=str(tmp_path), **kw), policy)


def test_draft_with_foreign_tensors_cannot_sync(policy, tmp_path):
    tok = build_char_tokenizer()
    other = str(save_checkpoint(build_tiny_model(16, 1, 2, len(tok)), tok, tmp_path / "other"))  # other width
    cfg = cfg_with(run_dir=str(tmp_path), rollout__speculative="draft", rollout__draft_model=other)
    prepare_speculative(cfg, policy)  # frozen: fine
    cfg.rollout.draft_sync = True
    with pytest.raises(ConfigError, match="config key 'rollout.draft_sync'.*tensors the policy lacks"):
        prepare_speculative(cfg, policy)


def test_spec_metrics_from_vllm_counters():
    snap = [SimpleNamespace(name="vllm:spec_decode_num_drafts", value=10),
            SimpleNamespace(name="vllm:spec_decode_num_draft_tokens", value=30),
            SimpleNamespace(name="vllm:spec_decode_num_accepted_tokens", value=12),
            SimpleNamespace(name="vllm:generation_tokens", value=99)]
    c = read_counters(snap)
    assert c == {"drafts": 10, "draft_tokens": 30, "accepted_tokens": 12}
    m = spec_metrics([c, {"drafts": 10, "draft_tokens": 30, "accepted_tokens": 0}])
    assert m["rollout/spec_acceptance_rate"] == pytest.approx(12 / 60)
    assert m["rollout/spec_tokens_per_verify"] == pytest.approx(1 + 12 / 20)


def test_buckets_are_bounded_and_never_copy_cpu_weights():
    model = torch.nn.Sequential(*[torch.nn.Linear(256, 256) for _ in range(6)])  # 6 x 257 KB
    sizes = [p.numel() * 4 for p in model.parameters()]
    buckets = list(iter_buckets(model, bucket_mb=1))
    expected = plan_buckets(sizes, 2**20, [n.split(".")[0] for n, _ in model.named_parameters()])
    assert [len(b) for b in buckets] == [len(b) for b in expected] and len(buckets) == 2
    params = list(model.parameters())
    flat = [t for b in buckets for _, t in b]
    assert all(t.data_ptr() == p.data_ptr() for t, p in zip(flat, params))  # views, not copies
    assert list(iter_buckets(model, bucket_mb=1, keep=False)) == []  # non-senders keep nothing


def test_plan_buckets_keeps_big_tensors_alone():
    assert plan_buckets([10, 300, 10, 10, 50], 100) == [[0, 1], [2, 3, 4]]
    assert plan_buckets([], 100) == []


def test_nccl_ranks_follow_the_trainer_per_engine():
    info = {"master_address": "h", "master_port": 1, "rank_offset": 1, "world_size": 5}
    assert [engine_init_info(info, i, 2)["rank_offset"] for i in range(2)] == [1, 3]
    assert engine_init_info({"packed": True}, 1, 2) == {"packed": True}  # ipc: no ranks


def test_native_backends_skip_frozen_and_cast_like_object_store():
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 4))
    model[0].weight.requires_grad_(False)
    source = sync_source(model, skip_frozen=True, dtype=torch.bfloat16)  # vLLM's WeightSource protocol
    assert [m.name for m in source.metadata()] == ["1.weight", "1.bias"] and source_bytes(source) == 40
    assert [(n, t.dtype) for n, t in source] == [("1.weight", torch.bfloat16), ("1.bias", torch.bfloat16)]
    assert len(list(sync_source(model, skip_frozen=False, dtype=None))) == 3


def test_colocation_puts_engine_and_learner_rank_in_one_bundle():
    cfg = cfg_with(cluster__colocate=True, rollout__num_engines=2, **GPU)
    demands, shared = colocated(cfg, role_demands(cfg))
    (group,) = [d for d in demands if d.role == "colocated"]
    assert [b["GPU"] for b in group.bundles] == [1.0, 1.0] and [b["CPU"] for b in group.bundles] == [1.0, 1.0]
    assert {d.role for d in shared} == {"rollout", "learner"} and "learner" not in {d.role for d in demands}
    assert colocated(cfg_with(), role_demands(cfg_with()))[1] == []


def test_expand_per_token_keeps_dtype_and_replaces():
    from rlsys.rollout.extension import expand_per_token

    out = torch.full((6,), float("nan"))
    expand_per_token(out, torch.tensor([0.6, -1.0, 2.0]), torch.tensor([2, 5, 6], dtype=torch.int32), -1.0, 1.0)
    assert out.tolist() == pytest.approx([0.6, 0.6, 1.0, 1.0, 1.0, 2.0])  # float temperatures survive
    out = torch.zeros(4, dtype=torch.int32)
    expand_per_token(out, torch.tensor([3, 0], dtype=torch.int32), torch.tensor([1, 4]), 0, 100)
    assert out.tolist() == [3, 100, 100, 100]


def test_engine_setup_calls():
    from rlsys.rollout.engine_options import engine_setup_calls

    assert engine_setup_calls(cfg_with()) == ["rlsys_fix_cpu_seeded_discard"]
    cfg = cfg_with(rollout__speculative="draft", rollout__draft_model="layers:1", rollout__draft_sync=True)
    assert engine_setup_calls(cfg) == ["rlsys_fix_cpu_seeded_discard", "rlsys_fix_cpu_spec_expand",
                                       "rlsys_enable_draft_sync"]


def test_engine_groups_join_in_order_and_become_batch_rows():
    import numpy as np

    from rlsys.data.dataset import PromptDataset
    from rlsys.rollout.fleet import group_batch
    from rlsys.rollout.worker import EngineOutput

    def group(tokens: list[list[int]], reason: str) -> EngineOutput:
        ids = [np.array(t, np.int64) for t in tokens]
        return EngineOutput(ids, [np.zeros(len(t), np.float32) for t in tokens], [reason] * len(tokens),
                            [str(t) for t in tokens], sum(map(len, tokens)), policy_version=1, seconds=0.5)

    out = EngineOutput.join([group([[1, 2], [3]], "stop"), group([[4, 5, 6]], "length")], policy_version=2, seconds=1.5)
    assert [t.tolist() for t in out.response_token_ids] == [[1, 2], [3], [4, 5, 6]]
    assert out.finish_reason == ["stop", "stop", "length"] and out.response_text == ["[1, 2]", "[3]", "[4, 5, 6]"]
    assert (out.tokens, out.policy_version, out.seconds) == (6, 2, 1.5) and len(out.behaviour_logprobs) == 3
    data = PromptDataset(path="memory", prompts=["p0", "p1"], prompt_token_ids=[np.arange(2), np.arange(3)],
                         ground_truth=["a", "b"], data_source=["arithmetic"] * 2)
    batch = group_batch(data, 1, 7, out)
    assert batch.group_id.tolist() == [7] * 3 and batch.sample_index.tolist() == [0, 1, 2]
    assert batch.policy_version.tolist() == [2] * 3 and batch.ground_truth == ["b"] * 3
    assert [len(p) for p in batch.prompt_token_ids] == [3] * 3 and batch.finish_reason == out.finish_reason
