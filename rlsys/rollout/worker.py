"""RolloutWorker: one vLLM engine of the fleet (TP ranks live inside the engine)."""

from __future__ import annotations

import os
import time

import numpy as np

from rlsys.config import RLSysConfig
from rlsys.rollout.engine_options import engine_options, engine_setup_calls


class RolloutWorker:
    def __init__(self, cfg: RLSysConfig, model_path: str, engine_index: int = 0):
        r = cfg.rollout
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(r.kv_cache_gb))
        from transformers import AutoConfig
        from vllm import LLM

        vocab = AutoConfig.from_pretrained(model_path).vocab_size
        self.llm = LLM(
            model=model_path, dtype=cfg.model.dtype, seed=cfg.trainer.seed + engine_index,
            enforce_eager=r.enforce_eager, max_model_len=r.max_model_len,
            tensor_parallel_size=r.tensor_parallel_size, gpu_memory_utilization=r.gpu_memory_utilization,
            enable_prefix_caching=True,  # the G samples of a prompt share its KV blocks
            logprobs_mode="processed_logprobs",  # behaviour log-probs of the distribution actually sampled
            max_logprobs=vocab if vocab <= 4096 else 20,  # full distributions for parity checks on tiny models
            worker_extension_cls="rlsys.rollout.extension.WeightSyncExtension",
            **engine_options(cfg, model_path),  # speculative decoding, native weight transfer, sleep mode
        )
        self.version = 0
        for call in engine_setup_calls(cfg):  # worker-extension set-up (rlsys/rollout/extension.py)
            self.llm.collective_rpc(call)

    def generate(self, prompt_token_ids: list[list[int]], seeds: list[int], n: int, temperature: float,
                 top_p: float, max_tokens: int) -> dict:
        """n samples per prompt; per-sample token ids, sampled-token log-probs and finish reason."""
        from vllm import SamplingParams

        t0 = time.perf_counter()
        params = [SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                                 logprobs=0, seed=s, skip_special_tokens=True) for s in seeds]
        prompts = [{"prompt_token_ids": list(map(int, p))} for p in prompt_token_ids]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        ids, logps, reasons, texts = [], [], [], []
        for out in outputs:
            for c in sorted(out.outputs, key=lambda c: c.index):
                tok = list(c.token_ids)
                ids.append(np.asarray(tok, dtype=np.int64))
                logps.append(np.asarray([lp[t].logprob for lp, t in zip(c.logprobs, tok)], dtype=np.float32))
                reasons.append("stop" if c.finish_reason == "stop" else str(c.finish_reason))
                texts.append(c.text)
        return {"response_token_ids": ids, "behaviour_logprobs": logps, "finish_reason": reasons,
                "response_text": texts, "policy_version": self.version,
                "seconds": time.perf_counter() - t0, "tokens": int(sum(len(x) for x in ids))}

    def prompt_logprobs(self, token_ids: list[list[int]]) -> list[np.ndarray]:
        """Full next-token log-prob distributions at every prompt position >= 1 ([T-1, V] each)."""
        from vllm import SamplingParams

        vocab = self.llm.llm_engine.model_config.get_vocab_size()
        params = SamplingParams(max_tokens=1, temperature=1.0, prompt_logprobs=vocab)
        outs = self.llm.generate([{"prompt_token_ids": list(map(int, t))} for t in token_ids], params, use_tqdm=False)
        result = []
        for out in outs:
            rows = []
            for pos in out.prompt_logprobs[1:]:
                row = np.full(vocab, -np.inf, dtype=np.float64)
                for tok, lp in pos.items():
                    row[tok] = lp.logprob
                rows.append(row)
            result.append(np.stack(rows))
        return result

    # ---- weight sync (called by the sync backend) ----------------------------------------------
    def begin_weight_update(self, version: int) -> None:
        self.llm.collective_rpc("rlsys_begin_weight_update")

    def load_weights(self, bucket: dict, version: int) -> int:
        return sum(self.llm.collective_rpc("rlsys_load_weights", args=(bucket,)))

    def finish_weight_update(self, version: int) -> int:
        self.llm.collective_rpc("rlsys_finish_weight_update")
        self.llm.reset_prefix_cache()  # cached KV blocks were computed by the old weights
        self.version = version
        return version

    def get_version(self) -> int:
        return self.version

    # ---- speculative decoding, native weight transfer, colocation -----------------------------
    def spec_counters_delta(self) -> dict[str, int]:
        """Draft / accepted token counts since the last call (zeros without speculative decoding)."""
        from rlsys.rollout.speculative import COUNTERS, read_counters

        if not self.llm.llm_engine.log_stats:
            return dict.fromkeys(COUNTERS.values(), 0)
        now = read_counters(self.llm.get_metrics())
        prev, self._spec_prev = getattr(self, "_spec_prev", dict.fromkeys(now, 0)), now
        return {k: now[k] - prev[k] for k in now}

    def weight_transfer(self, method: str, payload: dict | None = None) -> None:
        """vLLM's native weight-transfer calls (nccl / ipc backends, rlsys/sync/native.py)."""
        fn = getattr(self.llm, method)
        fn() if payload is None else fn(payload)

    def set_version(self, version: int) -> int:
        self.llm.reset_prefix_cache()  # cached KV blocks were computed by the old weights
        self.version = version
        return version

    def draft_checksum(self) -> dict:
        return self.llm.collective_rpc("rlsys_draft_checksum")[0]

    def sleep(self, level: int) -> None:
        self.llm.sleep(level=level)

    def wake(self) -> None:
        self.llm.wake_up()
