"""The actors of model-based rewards (verifier.models): a scalar reward model (an HF sequence-classification
model, torch) and a generative judge (its own vLLM engine, never synced). They only run the model; what
the samples say to it and what its answer means is the pool's (rlsys/verify/verdicts.py)."""

from __future__ import annotations

import os
import time

from rlsys.runtime.deadlines import ProbedActor


class ScalarRewardWorker(ProbedActor):
    """Scores (prompt, response) pairs with a decoder sequence-classification model (LlamaForSequenceClassification,
    Qwen2ForSequenceClassification, ...): its `score` head on the hidden state of the chat's last token."""

    def __init__(self, path: str, dtype: str, max_model_len: int, cpus: float, threads: str):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from rlsys.runtime.threads import set_threads, stage_threads

        self.cpus, self.threads = cpus, threads
        set_threads(stage_threads(threads, cpus, alone=False))
        self.tok = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForSequenceClassification.from_pretrained(path, dtype=getattr(torch, dtype)).eval()
        if not hasattr(self.model, "score") or self.model.config.num_labels != 1:
            raise ValueError(f"{path}: {type(self.model).__name__} with num_labels={self.model.config.num_labels} is not "
                             f"a scalar reward model; one needs a decoder sequence-classification model with num_labels=1 "
                             f"(a `score` head), e.g. LlamaForSequenceClassification")
        self.max_len = max_model_len

    def texts(self, prompts: list[list[dict]], responses: list[str]) -> list[list[int]]:
        """Token ids of each chat (prompt + the response as the assistant's turn), cut to the last max_model_len."""
        out = []
        for p, r in zip(prompts, responses):
            chat = [*p, {"role": "assistant", "content": r}]
            if getattr(self.tok, "chat_template", None):
                ids = self.tok.apply_chat_template(chat, tokenize=True, return_dict=False)
            else:
                ids = self.tok("\n".join(m["content"] for m in chat))["input_ids"]
            out.append(list(ids)[-self.max_len:])
        return out

    def features(self, prompts: list[list[dict]], responses: list[str]):
        """(hidden state of each chat's last token [n, hidden], tokens read): batched with left padding (the
        last position is every row's last token) and position ids that start at each row's first token, so
        a row gives the same features in any batch. The head reads these; training a head does too."""
        import torch

        rows = self.texts(prompts, responses)
        width = max(map(len, rows))
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, width - len(r):], mask[i, width - len(r):] = torch.tensor(r), 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            base = getattr(self.model, self.model.base_model_prefix)
            return base(input_ids=ids, attention_mask=mask, position_ids=positions).last_hidden_state[:, -1], int(mask.sum())

    def score(self, prompts: list[list[dict]], responses: list[str], alone: bool = False) -> dict:
        """Raw head values of the samples."""
        import torch

        from rlsys.runtime.threads import set_threads, stage_threads

        t0 = time.perf_counter()
        set_threads(stage_threads(self.threads, self.cpus, alone))
        hidden, tokens = self.features(prompts, responses)
        with torch.no_grad():
            raw = self.model.score(hidden)[:, 0].float()
        return {"raw": raw.tolist(), "prompt_tokens": tokens, "tokens": 0, "seconds": time.perf_counter() - t0}


class JudgeWorker(ProbedActor):
    """A generative judge: a vLLM engine of the judge model answering chats greedily."""

    def __init__(self, path: str, dtype: str, max_model_len: int, max_new_tokens: int, gpus: float,
                 kv_cache_gb: float, seed: int = 0):
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_gb))
        from vllm import LLM

        kwargs = dict(model=path, dtype=dtype, max_model_len=max_model_len, seed=seed, enforce_eager=True,
                      enable_prefix_caching=True,  # the template's shared head is computed once
                      disable_log_stats=True)
        if gpus > 0:
            kwargs["enable_sleep_mode"] = True  # placement=colocated: it sleeps while the fleet generates
        else:  # CPU: no partial prefills (ENVIRONMENT.md: they crashed seeded engines), one wave per batch
            kwargs.update(enable_chunked_prefill=False, max_num_batched_tokens=max(8192, max_model_len))
        self.llm = LLM(**kwargs)
        self.tok, self.max_len, self.max_new = self.llm.get_tokenizer(), max_model_len, max_new_tokens
        self.gpu, self.asleep = gpus > 0, False

    def score(self, chats: list[list[dict]], alone: bool = False) -> dict:
        """The judge's answer to each chat (a prompt longer than max_model_len - max_new_tokens keeps its end,
        where the template's question is)."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        t0 = time.perf_counter()
        self.wake()
        keep = self.max_len - self.max_new
        prompts = [self.tok.apply_chat_template(c, tokenize=True, add_generation_prompt=True, return_dict=False)[-keep:]
                   for c in chats]
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompts],
                                 SamplingParams(temperature=0.0, max_tokens=self.max_new), use_tqdm=False)
        return {"texts": [o.outputs[0].text for o in outs], "prompt_tokens": sum(map(len, prompts)),
                "tokens": sum(len(o.outputs[0].token_ids) for o in outs), "seconds": time.perf_counter() - t0}

    def sleep(self) -> None:
        """GPU: free the weights and KV cache while the policy fleet generates (CPU: vLLM has no sleep mode)."""
        if self.gpu and not self.asleep:
            self.llm.sleep(level=1)
            self.asleep = True

    def wake(self) -> None:
        if self.asleep:
            self.llm.wake_up()
            self.asleep = False
