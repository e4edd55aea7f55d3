"""LoRA on the learner (rlsys/learner/lora.py), without a process group: adapters, the reference as the
base with adapters off, merged weights and the saved PEFT adapter against PEFT's own loader."""

import pytest
import torch

from rlsys.config import RLSysConfig, check_config
from rlsys.config.lora import LoraConfig
from rlsys.errors import ConfigError
from rlsys.learner.lora import (MergedWeight, adapter_params, adapters_disabled, add_adapters, lora_layers,
                                merged_params, merged_state_dict, save_adapter, scale)
from rlsys.models.tiny import build_tiny_model
from rlsys.sync.bucket import iter_buckets

LORA = LoraConfig(rank=4, alpha=8.0)


def _model(lora=LORA, seed=0):
    base = build_tiny_model(32, 2, 4, vocab_size=50, seed=seed)
    return base, add_adapters(build_tiny_model(32, 2, 4, vocab_size=50, seed=seed), lora)


def _randomise_b(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            b = layer.lora_B["default"].weight
            b.copy_(torch.randn(b.shape, generator=g) * 0.1)


IDS = torch.tensor([[3, 7, 11, 2, 9, 30, 41, 5]])


def _logits(model):
    with torch.no_grad():
        return model(input_ids=IDS).logits


def test_only_adapters_train_and_start_as_the_base():
    base, model = _model()
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert len(lora_layers(model)) == 2 * 7  # every linear of both layers
    assert torch.equal(_logits(model), _logits(base))  # B = 0: the adapted model is the base until it trains
    model(input_ids=IDS).logits.sum().backward()
    assert all((p.grad is None) != p.requires_grad for p in model.parameters())  # no gradient memory on the base


def test_reference_is_the_base_with_adapters_off():
    base, model = _model()
    _randomise_b(model)
    adapted = _logits(model)
    assert not torch.allclose(adapted, _logits(base))
    with adapters_disabled(model):
        torch.testing.assert_close(_logits(model), _logits(base), rtol=0, atol=0)
    torch.testing.assert_close(_logits(model), adapted, rtol=0, atol=0)  # switched back on
    assert [n for n, p in model.named_parameters() if p.requires_grad] == [n for n, _ in model.named_parameters()
                                                                             if ".lora_" in n]


def test_merged_weights_give_the_adapted_model_and_leave_it_unmerged():
    base, model = _model()
    _randomise_b(model)
    adapted = _logits(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    merged = merged_state_dict(model.state_dict(), scale(LORA))
    assert set(merged) == set(base.state_dict())  # the base checkpoint's names
    base.load_state_dict(merged)
    torch.testing.assert_close(_logits(base), adapted, rtol=1e-5, atol=1e-5)
    # the sync's merged copies: the same tensors, and the learner's weights untouched
    sent = dict(b for bucket in iter_buckets(model, 1, lora=LoraConfig(rank=4, alpha=8.0, merge=True)) for b in bucket)
    assert set(sent) == {f"{n}.weight" for n in lora_layers(model)}
    for name, t in sent.items():
        torch.testing.assert_close(t, merged[name], rtol=0, atol=0)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_adapter_sync_sends_peft_names_only():
    _, model = _model()
    sent = [n for bucket in iter_buckets(model, 1, lora=LORA) for n, _ in bucket]
    assert sorted(sent) == sorted(n for n, _ in adapter_params(model))
    assert all(".default." not in n and (".lora_A.weight" in n or ".lora_B.weight" in n) for n in sent)
    adapter_bytes = sum(p.numel() for _, p in adapter_params(model))
    assert adapter_bytes < 0.2 * sum(p.numel() for p in model.parameters())
    [(name, w)] = merged_params(model, 2.0)[:1]
    assert isinstance(w, MergedWeight) and name.endswith("q_proj.weight") and w.numel() == 32 * 32


def test_saved_adapter_loads_in_peft(tmp_path):
    peft = pytest.importorskip("peft")
    base, model = _model()
    _randomise_b(model)
    save_adapter(model.state_dict(), LORA, "base-path", str(tmp_path / "adapter"))
    loaded = peft.PeftModel.from_pretrained(base, str(tmp_path / "adapter"))
    torch.testing.assert_close(_logits(loaded), _logits(model), rtol=0, atol=0)


def test_config_refuses_what_lora_cannot_run_with():
    cfg = RLSysConfig(run_dir="x")
    cfg.learner.lora.rank = 8
    check_config(cfg)
    cfg.trainer.max_staleness, cfg.trainer.in_flight_updates = 1, True
    with pytest.raises(ConfigError, match="trainer.in_flight_updates"):
        check_config(cfg)
    cfg.learner.lora.merge = True
    check_config(cfg)
    cfg.learner.lora.rank = -1
    with pytest.raises(ConfigError, match="learner.lora.rank"):
        check_config(cfg)


def test_checksums_name_the_engine_version_and_tensors():
    from rlsys.sync.check import WeightSyncError, compare_digests, tensor_digest

    a = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    assert tensor_digest(a) == tensor_digest(a.clone()) != tensor_digest(a.reshape(3, 2))
    b = a.clone()
    b[1, 2] = torch.nextafter(b[1, 2], torch.tensor(100.0))  # one ulp
    assert tensor_digest(a) != tensor_digest(b)
    sent = {"x.weight": tensor_digest(a), "y.weight": tensor_digest(a.T.contiguous())}
    compare_digests(sent, dict(sent), 0, 3)
    with pytest.raises(WeightSyncError, match=r"engine 1 does not hold the weights of version 3: 1 of 2 .*y.weight"):
        compare_digests(sent, {**sent, "y.weight": tensor_digest(b)}, 1, 3)
    with pytest.raises(WeightSyncError, match="never finished"):
        compare_digests(sent, None, 0, 3)


def test_auto_probes_as_many_syncs_as_fit_in_two_percent_of_the_time(monkeypatch):
    from rlsys.sync import check

    now = [0.0]
    monkeypatch.setattr(check.time, "monotonic", lambda: now[0])
    schedule, probed = check.ProbeSchedule("auto"), []
    for step in range(40):  # a sync every 10 s, a probe costs 0.5 s: 2% of 10 s is 0.2 s
        if schedule.due():
            probed.append(step)
            schedule.record(0.5)
        now[0] += 10.0
    assert probed[0] == 0 and 14 <= len(probed) <= 16  # the first always; then one in 2.5 (2% of 390 s: 7.8 s)
    assert schedule.spent <= 0.02 * now[0] + 0.5
    assert all(check.ProbeSchedule("probe").due() for _ in range(3)) and not check.ProbeSchedule("off").due()
