"""Token-budget micro-batches on packed rows train exactly like fixed-size padded micro-batches:
same loss, same gradients, for every loss aggregation; on one real learner worker (FSDP2 on a
one-rank gloo group, no Ray) shared by the module."""

import copy

import numpy as np
import pytest
import torch
from torch.distributed.tensor import DTensor

from rlsys.config import RLSysConfig
from rlsys.data.batch import RolloutBatch
from rlsys.learner import microbatch as M
from rlsys.learner.losses import AGGREGATIONS, Denominators
from rlsys.learner.role_config import learner_role_config
from rlsys.models.tiny import build_char_tokenizer, build_tiny_model, save_checkpoint
from tests.unit.test_microbatch import rollouts


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    from rlsys.learner.worker import LearnerWorker
    from rlsys.runtime.net import free_address

    path = save_checkpoint(build_tiny_model(32, 2, 4, vocab_size=len(build_char_tokenizer()), seed=1),
                           build_char_tokenizer(), tmp_path_factory.mktemp("tiny"))
    w = LearnerWorker(learner_role_config(fresh_config()), str(path), 0, 1)
    w.setup(*free_address())
    yield w
    w.shutdown()


def fresh_config() -> RLSysConfig:
    """Defaults, one rank (each test starts here, not from the worker's last config)."""
    cfg = RLSysConfig()
    cfg.learner.world_size = 1
    return cfg


def one_step(worker, cfg: RLSysConfig, batch: RolloutBatch, num_micro: int,
             denom: Denominators | None = None) -> tuple[dict, dict]:
    """train_step from the base weights; the gradients just before the optimizer step (denominators:
    the batch's own unless given)."""
    worker.reset(learner_role_config(cfg))
    grads, step = {}, worker._step

    def capture(module, optimizer):
        for name, p in module.named_parameters():
            g = p.grad.full_tensor() if isinstance(p.grad, DTensor) else p.grad
            grads[name] = g.detach().clone()
        return step(module, optimizer)

    worker._step = capture
    try:
        lengths = batch.response_lengths
        denom = denom or Denominators(tokens=float(lengths.sum()), sequences=float(len(batch)), max_len=16.0)
        stats = worker.train_step(batch, denom, num_micro)
    finally:
        del worker._step
    return stats, grads


@pytest.mark.parametrize("agg", sorted(AGGREGATIONS))
def test_token_budget_packed_equals_fixed_padded(worker, agg):
    base = fresh_config()
    base.algorithm.loss_agg, base.algorithm.kl.coef, base.algorithm.entropy_coef = agg, 0.1, 0.01
    base.rollout.temperature = 0.8
    batch = rollouts()
    fixed = copy.deepcopy(base)
    fixed.learner.packed, fixed.learner.micro_batch_size, fixed.learner.max_tokens_per_micro_batch = False, 4, 0
    want_stats, want = one_step(worker, fixed, batch, num_micro=3)  # 4 + 4 + 3 samples, padded rows
    lengths = M.sample_tokens(batch)
    for budget, extra in ((int(lengths.max()), 0), (60, 2), (10_000, 0)):  # one sample / a few / all per micro-batch
        packed = copy.deepcopy(base)
        packed.learner.packed, packed.learner.max_tokens_per_micro_batch = True, budget
        k = M.micro_batch_count(lengths, 4, budget) + extra  # extra: slots the group adds for other ranks
        stats, got = one_step(worker, packed, batch, num_micro=k)
        assert stats["actor/pg_loss"] == pytest.approx(want_stats["actor/pg_loss"], abs=1e-6)
        assert stats["tokens"] == want_stats["tokens"] == batch.response_lengths.sum()
        assert stats["kl_sum"] == pytest.approx(want_stats["kl_sum"], rel=1e-5)
        assert stats["actor/grad_norm"] == pytest.approx(want_stats["actor/grad_norm"], rel=1e-5)
        assert want_stats["actor/grad_norm"] > 1e-3  # the comparison is about real gradients
        for name, g in want.items():
            assert torch.allclose(got[name], g, atol=1e-6, rtol=1e-4), name


def test_activation_checkpointing_and_bf16_compute(worker):
    """Recomputing layers in backward changes no gradient; bf16 compute (FSDP2 MixedPrecisionPolicy)
    keeps fp32 master weights and lands near the fp32 step (only where the CPU does bf16 natively)."""
    from rlsys.learner.build import cpu_bf16_native

    base = fresh_config()
    base.learner.packed, base.learner.max_tokens_per_micro_batch = True, 80
    batch, k = rollouts(seed=1), 3
    want_stats, want = one_step(worker, base, batch, k)
    ckpt = copy.deepcopy(base)
    ckpt.learner.activation_checkpointing = True
    stats, got = one_step(worker, ckpt, batch, k)
    assert worker.model.model.gradient_checkpointing  # the knob reached the model
    assert stats["actor/pg_loss"] == pytest.approx(want_stats["actor/pg_loss"], abs=1e-6)
    for name, g in want.items():
        assert torch.allclose(got[name], g, atol=1e-6, rtol=1e-4), name
    if not cpu_bf16_native():
        pytest.skip("this CPU has no native bf16")
    bf16 = copy.deepcopy(base)
    bf16.learner.mixed_precision = "bfloat16"
    stats, got = one_step(worker, bf16, batch, k)
    assert all(p.dtype == torch.float32 for p in worker.model.parameters())  # master weights
    assert all(g.dtype == torch.float32 for g in got.values())  # reduced in fp32
    assert stats["actor/grad_norm"] == pytest.approx(want_stats["actor/grad_norm"], rel=0.1)
    assert stats["entropy_sum"] == pytest.approx(want_stats["entropy_sum"], rel=1e-2)
    assert stats["entropy_sum"] != want_stats["entropy_sum"]  # it did compute in bf16


def test_critic_on_packed_rows_equals_padded(worker):
    """The value model reads the same hidden states from packed rows: same value loss and gradient."""
    base = fresh_config()
    base.algorithm.critic.enabled, base.algorithm.advantage = True, "gae"
    batch = rollouts(seed=2)
    rng = np.random.default_rng(7)
    batch.returns = [rng.standard_normal(len(r)).astype(np.float32) for r in batch.response_token_ids]
    padded = copy.deepcopy(base)
    padded.learner.packed, padded.learner.micro_batch_size = False, 4
    want, _ = one_step(worker, padded, batch, 3)
    packed = copy.deepcopy(base)
    packed.learner.packed, packed.learner.max_tokens_per_micro_batch = True, 100
    got, _ = one_step(worker, packed, batch, M.micro_batch_count(M.sample_tokens(batch), 4, 100))
    assert want["value_grad_norm"] > 1e-3
    assert got["value_grad_norm"] == pytest.approx(want["value_grad_norm"], rel=1e-5)
    values = worker.values(batch, 4)  # a token budget reorders samples; values come back in batch order
    assert [len(v) for v in values] == list(batch.response_lengths)
    one_by_one = [worker.values(batch.select([i]), 1)[0] for i in range(len(batch))]
    assert all(np.allclose(v, w, atol=1e-5) for v, w in zip(values, one_by_one))


def test_samples_without_advantage_are_skipped_with_the_same_update(worker):
    """GRPO without regularisers: groups whose rewards all agree have zero advantage, so the group leaves
    them out of the learners' work; with the whole batch's denominators the gradient is unchanged."""
    from types import SimpleNamespace

    from rlsys.data.step_batch import BatchMeta
    from rlsys.learner.group import LearnerGroup

    def with_gradient(batch, ranks):  # the rows of `batch` the group sends to the ranks
        rows = np.arange(len(batch))
        moves = BatchMeta.of(batch).moves  # some advantage != 0
        return batch.select(rows[LearnerGroup._with_gradient(SimpleNamespace(cfg=cfg, actors=ranks), moves, rows, keep)])

    cfg = fresh_config()
    batch = rollouts()
    for i in (1, 2, 5, 6, 9):  # five samples whose advantage is 0 at every token
        batch.advantages[i] = np.zeros_like(batch.advantages[i])
    keep = np.ones(len(batch), bool)
    moving = with_gradient(batch, [0])
    assert moving.prompt_id.tolist() == [0, 3, 4, 7, 8, 10]
    lengths = batch.response_lengths
    denom = Denominators(tokens=float(lengths.sum()), sequences=float(len(batch)), max_len=16.0)
    (_, full), (_, skipped) = one_step(worker, cfg, batch, 1, denom), one_step(worker, cfg, moving, 1, denom)
    assert max(g.abs().max().item() for g in full.values()) > 1e-4  # real gradients
    for name, g in full.items():
        assert torch.allclose(skipped[name], g, atol=1e-7, rtol=1e-5), name
    # an entropy bonus reads every sample: nothing is skipped then; nor below one sample per rank
    cfg.algorithm.entropy_coef = 0.01
    assert len(with_gradient(batch, [0])) == len(batch)
    cfg.algorithm.entropy_coef = 0.0
    for adv in batch.advantages:
        adv[:] = 0
    assert len(with_gradient(batch, [0, 1])) == 2


@pytest.mark.parametrize("packed", [True, False])
def test_observation_tokens_get_exactly_zero_gradient(worker, packed):
    """Episodes: tokens with mask 0 (observations) are context only. Whatever their advantage, behaviour
    and reference log-probs, the update is bitwise the same; only mask-1 tokens are counted."""
    cfg = fresh_config()
    cfg.algorithm.kl.coef, cfg.algorithm.entropy_coef, cfg.algorithm.loss_agg = 0.1, 0.01, "token_mean"
    cfg.learner.packed, cfg.learner.micro_batch_size = packed, 4
    batch, rng = rollouts(seed=3), np.random.default_rng(5)
    batch.token_mask = [(rng.random(len(r)) < 0.6).astype(np.int8) for r in batch.response_token_ids]
    for m in batch.token_mask:
        m[-1] = 1  # an episode ends on a model turn
    sampled = sum(int(m.sum()) for m in batch.token_mask)
    denom = Denominators(tokens=float(sampled), sequences=float(len(batch)), max_len=16.0)
    want_stats, want = one_step(worker, cfg, batch, 3, denom)
    junk = copy.deepcopy(batch)
    for col in ("advantages", "behaviour_logprobs", "ref_logprobs"):
        for v, m in zip(getattr(junk, col), junk.token_mask):
            v[m == 0] = rng.standard_normal(int((m == 0).sum())) * 50  # anything at all
    stats, got = one_step(worker, cfg, junk, 3, denom)
    assert want_stats["tokens"] == stats["tokens"] == sampled < batch.response_lengths.sum()
    assert want_stats["actor/grad_norm"] > 1e-3
    assert stats["actor/pg_loss"] == want_stats["actor/pg_loss"] and stats["kl_sum"] == want_stats["kl_sum"]
    for name, g in want.items():
        assert torch.equal(got[name], g), name
