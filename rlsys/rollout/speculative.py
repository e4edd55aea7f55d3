"""Speculative decoding for the rollout engines: config checks, vLLM's speculative_config, stats.

Speculative decoding is lossless: a drafter proposes k tokens, the policy verifies them in one
forward pass, and rejection sampling keeps the sampled distribution exactly the policy's. So RL
sees the same samples and behaviour log-probs, only faster when the drafts are accepted often.

rollout.speculative picks the drafter:
  ngram  copies continuations of n-grams already in the context (no weights)
  draft  a small LM with the policy's tokenizer (rollout.draft_model: a checkpoint, or
         "layers:K" = the policy's first K decoder layers, built at start)
  eagle  an EAGLE head checkpoint trained for the policy (rollout.draft_model)
  mtp    the policy's own multi-token-prediction layers (the checkpoint must have them)
A draft model either stays frozen or takes the policy's weights at every sync (rollout.draft_sync);
only names it has are loaded, so a "layers:K" draft tracks the policy's first K layers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from typing import TYPE_CHECKING

from rlsys.errors import ConfigError

if TYPE_CHECKING:
    from rlsys.config import RLSysConfig, RolloutConfig

# rollout.speculative -> vLLM's speculative method
METHODS = {"none": None, "ngram": "ngram", "draft": "draft_model", "eagle": "eagle", "mtp": "mtp"}
_LAYERS = re.compile(r"^layers:(\d+)$")
# n-gram lookup window: short, because RL prompts and responses are short
NGRAM_MIN, NGRAM_MAX = 2, 4


def _fail(key: str, msg: str):
    raise ConfigError(f"config key '{key}': {msg}")


def validate_speculative(r: RolloutConfig) -> None:
    """Knob combinations that make no sense, checked without touching any file."""
    if r.speculative not in METHODS:
        _fail("rollout.speculative", f"unknown method {r.speculative!r}; known: {list(METHODS)}")
    if r.num_speculative_tokens < 1:
        _fail("rollout.num_speculative_tokens", f"must be >= 1, got {r.num_speculative_tokens}")
    uses_model = r.speculative in ("draft", "eagle")
    if uses_model and not r.draft_model:
        what = "a draft checkpoint or layers:K" if r.speculative == "draft" else "the EAGLE head checkpoint"
        _fail("rollout.draft_model", f"rollout.speculative={r.speculative} needs {what}")
    if r.draft_model and not uses_model:
        _fail("rollout.draft_model", f"is set but rollout.speculative={r.speculative} uses no draft model")
    if r.draft_model and _LAYERS.match(r.draft_model) and r.speculative != "draft":
        _fail("rollout.draft_model", "layers:K builds a draft model; it needs rollout.speculative=draft")
    if r.draft_model and r.draft_model.startswith("layers:"):
        m = _LAYERS.match(r.draft_model)
        if not m or int(m.group(1)) < 1:
            _fail("rollout.draft_model", f"expected layers:K with K >= 1, got {r.draft_model!r}")
    if r.draft_sync and r.speculative != "draft":
        _fail("rollout.draft_sync", f"only a draft model can take the policy's weights (rollout.speculative={r.speculative})")


def draft_path(cfg: RLSysConfig, model_path: str) -> str | None:
    """Where the draft checkpoint lives ("layers:K" drafts are built into the run directory)."""
    d = cfg.rollout.draft_model
    if not d:
        return None
    m = _LAYERS.match(d)
    return str(Path(cfg.run_dir) / f"draft-layers-{m.group(1)}") if m else d


def prepare_speculative(cfg: RLSysConfig, model_path: str) -> None:
    """File checks that need the policy checkpoint; builds a layers:K draft. Runs before any actor."""
    r = cfg.rollout
    if r.speculative == "mtp" and not _mtp_layers(_read_config(model_path)):
        _fail("rollout.speculative", f"mtp needs a checkpoint with multi-token-prediction layers; {model_path} has "
              "none (no num_nextn_predict_layers / mtp_num_hidden_layers in config.json)")
    path = draft_path(cfg, model_path)
    if path is None:
        return
    m = _LAYERS.match(r.draft_model)
    if m:
        layers = _read_config(model_path).get("num_hidden_layers", 0)
        if not 1 <= int(m.group(1)) < layers:
            _fail("rollout.draft_model", f"{r.draft_model}: the policy has {layers} layers; K must be in [1, {layers - 1}]")
        build_layer_draft(model_path, int(m.group(1)), path)
    if not (Path(path) / "config.json").is_file():
        _fail("rollout.draft_model", f"{path} is not an HF checkpoint directory (no config.json)")
    if r.speculative == "draft":
        from transformers import AutoTokenizer

        if AutoTokenizer.from_pretrained(path).get_vocab() != AutoTokenizer.from_pretrained(model_path).get_vocab():
            _fail("rollout.draft_model", f"{path} has a different tokenizer than the policy {model_path}; "
                  "its proposals would be other tokens")
    if r.draft_sync:
        draft, policy = checkpoint_shapes(path), checkpoint_shapes(model_path)
        extra = sorted(set(draft.items()) - set(policy.items()))
        if extra:
            _fail("rollout.draft_sync", f"the draft {path} has tensors the policy lacks (name or shape), e.g. "
                  f"{extra[0][0]} {list(extra[0][1])}; only a draft made of policy tensors can take its weights")
        if r.sync_backend != "object_store" and draft != policy:
            _fail("rollout.draft_sync", f"{r.sync_backend} streams every policy tensor into the draft, so the draft "
                  "must have all of them; a smaller draft (e.g. layers:K) syncs with rollout.sync_backend=object_store")


def build_layer_draft(model_path: str, num_layers: int, out: str) -> str:
    """The policy's first num_layers decoder layers + its embedding, final norm and head."""
    if (Path(out) / "config.json").is_file():
        return out
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_path)
    model.model.layers = model.model.layers[:num_layers]
    model.config.num_hidden_layers = num_layers
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = model.config.layer_types[:num_layers]
    model.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(model_path).save_pretrained(out)
    return out


def checkpoint_shapes(path: str) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of a safetensors checkpoint, read from the headers only."""
    from safetensors import safe_open

    shapes = {}
    for f in sorted(Path(path).glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            for name in st.keys():
                shapes[name] = tuple(st.get_slice(name).get_shape())
    return shapes


def speculative_config(cfg: RLSysConfig, model_path: str) -> dict | None:
    """vLLM's speculative_config for the engine (None = no drafts)."""
    r = cfg.rollout
    method = METHODS[r.speculative]
    if method is None:
        return None
    spec = {"method": method, "num_speculative_tokens": r.num_speculative_tokens}
    if method == "ngram":
        spec.update(prompt_lookup_min=NGRAM_MIN, prompt_lookup_max=NGRAM_MAX)
    if r.draft_model:
        spec["model"] = draft_path(cfg, model_path)
    if method == "eagle" and "eagle3" in json.dumps(_read_config(spec["model"]).get("architectures", [])).lower():
        spec["method"] = "eagle3"
    return spec


def _read_config(path: str) -> dict:
    return json.loads((Path(path) / "config.json").read_text())


def _mtp_layers(config: dict) -> int:
    text = config.get("text_config") or {}
    keys = ("num_nextn_predict_layers", "mtp_num_hidden_layers")
    return max([config.get(k) or 0 for k in keys] + [text.get(k) or 0 for k in keys])


# ---- statistics ----------------------------------------------------------------------------------
COUNTERS = {"vllm:spec_decode_num_drafts": "drafts", "vllm:spec_decode_num_draft_tokens": "draft_tokens",
            "vllm:spec_decode_num_accepted_tokens": "accepted_tokens"}


def read_counters(metrics) -> dict[str, int]:
    """Cumulative spec-decode counters from vLLM's metrics snapshot (llm.get_metrics())."""
    out = dict.fromkeys(COUNTERS.values(), 0)
    for m in metrics:
        if m.name in COUNTERS:
            out[COUNTERS[m.name]] += int(m.value)
    return out


def spec_metrics(deltas: list[dict[str, int]]) -> dict[str, float]:
    """Step metrics from per-engine counter increments.

    acceptance rate = accepted / proposed draft tokens; tokens per verification = 1 + accepted /
    drafts, the tokens one policy forward pass yields (the speedup bound if drafting were free).
    """
    tot = {k: sum(d[k] for d in deltas) for k in COUNTERS.values()}
    return {"rollout/spec_acceptance_rate": tot["accepted_tokens"] / max(tot["draft_tokens"], 1),
            "rollout/spec_tokens_per_verify": 1.0 + tot["accepted_tokens"] / max(tot["drafts"], 1),
            "rollout/spec_draft_tokens": float(tot["draft_tokens"])}
