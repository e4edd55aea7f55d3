"""RolloutWorker: one vLLM engine of the fleet (TP ranks live inside the engine).

An async Ray actor around vLLM's AsyncLLM: the fleet sends one request per prompt group (the
group's G samples share the prompt's prefix cache) and many groups are in flight at once, so
the engine batches them continuously and each group comes back as soon as it finishes.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass, field, replace

import numpy as np

from rlsys.config import AgentConfig, RLSysConfig
from rlsys.rollout.engine_options import engine_options, engine_setup_calls
from rlsys.seeds import engine_seed
from rlsys.sync.bucket import Bucket
from rlsys.sync.result import EngineLoad


@dataclass(frozen=True)
class EngineSpec:
    """What one fleet engine is built from: chosen on the driver, so the actor never sees the run's config."""

    index: int  # position in the fleet; also offsets the sampling seed and names requests
    kwargs: dict  # vLLM engine arguments
    setup_calls: tuple[str, ...]  # worker-extension methods run once after start-up
    kv_cache_gb: float  # VLLM_CPU_KVCACHE_SPACE (CPU backend)
    agent: AgentConfig = field(default_factory=AgentConfig)  # episodes' budgets and environment modules (rollout.agent)
    node_cores: bool = False  # CPU backend: the model runs in the engine-core process on every core of the node (it generates alone)


@dataclass
class EngineOutput:
    """An engine's samples: one prompt group's, or every group of a `generate` call in prompt order."""

    response_token_ids: list[np.ndarray]  # int64 token ids per sample
    behaviour_logprobs: list[np.ndarray]  # float32 log-prob of each sampled token, from the engine
    finish_reason: list[str]  # per sample: "stop" (eos or stop string) | "length" | vLLM's other reasons
    response_text: list[str]  # per sample, special tokens skipped
    tokens: int  # tokens generated, all samples together
    policy_version: int = 0  # weights version that sampled them (the newest, if weights changed in flight)
    seconds: float = 0.0  # wall time of the call
    token_versions: list[np.ndarray] | None = None  # int64 per sample: the version that sampled each token
    token_mask: list[np.ndarray] | None = None  # episodes: int8 per token, 1 = sampled, 0 = observation
    turn_index: list[np.ndarray] | None = None  # episodes: int16 per token, its model turn
    episodes: list[dict] | None = None  # episodes: status, turns, tool calls ... per sample (Episode.summary)
    prompt_token_ids: list | None = None  # agents: per sample the ids of its first call (None: the row's prompt)

    @staticmethod
    def join(parts: list[EngineOutput], policy_version: int, seconds: float) -> EngineOutput:
        """Several groups' samples as one output, in order."""
        col = lambda name: [x for p in parts for x in getattr(p, name) or []] or None  # noqa: E731
        return EngineOutput(col("response_token_ids"), col("behaviour_logprobs"), col("finish_reason"),
                            col("response_text"), int(sum(p.tokens for p in parts)), policy_version, seconds,
                            col("token_versions"), col("token_mask"), col("turn_index"), col("episodes"),
                            col("prompt_token_ids"))


def engine_spec(cfg: RLSysConfig, model_path: str, engine_index: int = 0) -> EngineSpec:
    """The one place an engine's vLLM arguments are chosen."""
    from transformers import AutoConfig

    r = cfg.rollout
    vocab = AutoConfig.from_pretrained(model_path).vocab_size
    kwargs = dict(
        model=model_path, dtype=cfg.model.dtype, seed=engine_seed(cfg.trainer.seed, engine_index),
        enforce_eager=r.enforce_eager, max_model_len=r.max_model_len,
        tensor_parallel_size=r.tensor_parallel_size, gpu_memory_utilization=r.gpu_memory_utilization,
        enable_prefix_caching=True,  # the G samples of a prompt share its KV blocks
        logprobs_mode="processed_logprobs",  # behaviour log-probs of the distribution actually sampled
        max_logprobs=vocab if vocab <= 4096 else 20,  # full distributions for parity checks on tiny models
        worker_extension_cls="rlsys.rollout.extension.WeightSyncExtension",
        disable_log_stats=True,
    )
    if cfg.cluster.rollout.gpus == 0:
        # vLLM's CPU default (256 sequences, 2048 tokens per engine step) splits a step's batch into
        # waves and its prefill into chunks; one wave of the engine's share is fewer engine steps
        # (tiny default, 512 samples: 0.38 vs 0.48 s, benchmarks/README.md "Tiny default vs TRL").
        per_engine = -(-cfg.trainer.prompts_per_step * r.n // r.num_engines)
        kwargs.update(max_num_seqs=min(max(256, per_engine), 1024), max_num_batched_tokens=8192)
    # speculative decoding, native weight transfer, sleep mode (drafts turn the stats back on)
    kwargs.update(engine_options(cfg, model_path))
    # vLLM's CPU auto-binding keeps one core for its scheduler: on a small node that costs a third of
    # generation (SmolLM2-135M, 2 cores, 128 / 32 sequences of 64 tokens: 101 vs 168 / 89 vs 139 tok/s).
    # A lone engine of a synchronous run has the node to itself while it generates (the learners wait),
    # so with cluster.threads=auto it takes every core, in its engine-core process (RolloutWorker).
    alone = (cfg.cluster.threads == "auto" and cfg.trainer.max_staleness == 0 and cfg.cluster.rollout.gpus == 0
             and r.num_engines == 1 and r.tensor_parallel_size == 1)
    return EngineSpec(engine_index, kwargs, tuple(engine_setup_calls(cfg)), r.kv_cache_gb, r.agent, node_cores=alone)


class RolloutWorker:
    def __init__(self, spec: EngineSpec):
        from rlsys.runtime.cluster import pin_to_cpus

        pin_to_cpus("RLSYS_ROLLOUT_CPUS")  # before the engine starts its processes: they inherit it
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(spec.kv_cache_gb))
        if spec.node_cores and "VLLM_CPU_OMP_THREADS_BIND" not in os.environ:
            _run_model_in_engine_core()
        self.error_log = _log_engine_errors()
        self.kwargs = dict(spec.kwargs)
        self.engine_index, self.version, self.llm = spec.index, 0, None
        self.agent, self._episodes = spec.agent, None  # the episode runner, made on the first episode
        self._ids = itertools.count()
        self._setup_calls, self._setup_lock = list(spec.setup_calls), None  # extension set-up, run once
        self._loaded, self._next_bucket = None, {}  # load_weights: the next bucket index of the sync in progress
        self.adapter = None  # learner.lora: the LoRARequest of the adapter every request runs with (None: the base)

    def _engine(self):
        """Built lazily inside the actor's event loop: AsyncLLM's output handler runs on that loop."""
        if self.llm is None:
            from vllm import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM

            self.llm = AsyncLLM.from_engine_args(AsyncEngineArgs(**self.kwargs))
        return self.llm

    async def _ready(self):
        """The engine, with its worker-extension set-up done (rlsys/rollout/extension.py) before any request."""
        llm = self._engine()
        if self._setup_calls:
            self._setup_lock = self._setup_lock or asyncio.Lock()
            async with self._setup_lock:
                while self._setup_calls:
                    await llm.collective_rpc(self._setup_calls[0])
                    self._setup_calls.pop(0)
        return llm

    async def _request(self, prompt_ids, params):
        """One request to the final output (intermediate outputs are never produced)."""
        final = None
        async for out in (await self._ready()).generate({"prompt_token_ids": [int(t) for t in prompt_ids]}, params,
                                                        request_id=f"e{self.engine_index}-{next(self._ids)}",
                                                        lora_request=self.adapter):
            final = out
        return final

    async def generate_group(self, prompt_ids, seed: int, n: int, temperature: float, top_p: float,
                             max_tokens: int, episode: dict | None = None) -> EngineOutput:
        """The n samples of one prompt: token ids, sampled-token log-probs, finish reasons, texts.
        episode: {"env": name, "row": the dataset row}: each sample is an episode in that environment."""
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        t0 = time.perf_counter()
        if episode is not None:
            return await self._episode_group(prompt_ids, seed, n, dict(temperature=temperature, top_p=top_p),
                                             max_tokens, episode, t0)
        params = SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens, logprobs=0,
                                seed=seed, skip_special_tokens=True, output_kind=RequestOutputKind.FINAL_ONLY)
        out = _unpack([await self._request(prompt_ids, params)], self.version)
        return replace(out, policy_version=self.version, seconds=time.perf_counter() - t0)

    async def _episode_group(self, prompt_ids, seed: int, n: int, sampling: dict, max_tokens: int, episode: dict,
                             t0: float) -> EngineOutput:
        """n episodes of one row, run concurrently (rlsys/agents/episode.py); the prompt's KV blocks are shared
        through the prefix cache, and each turn's request extends the previous one's ids."""
        from rlsys.agents.episode import EpisodeRunner, episode_arrays

        if self._episodes is None:
            from transformers import AutoTokenizer

            from rlsys.agents.modules import load_env_modules
            from rlsys.agents.tools import ToolPool

            load_env_modules(self.agent.modules)  # stop strings and roles; reset and step run in the tool processes
            tools = ToolPool(self.agent.modules, self.agent.tool_workers, 32 * self.agent.max_observation_tokens)
            self._episodes = EpisodeRunner(self.agent, AutoTokenizer.from_pretrained(self.kwargs["model"]), self._request,
                                           tools, lambda c, k: token_versions(getattr(c, "weight_versions", None), k, self.version))
        eps = await asyncio.gather(*[self._episodes.run(episode["env"], episode["row"], prompt_ids, seed, j, sampling,
                                                        max_tokens) for j in range(n)])
        cols = episode_arrays(eps)
        texts = [self._episodes.tok.decode(ids, skip_special_tokens=True) for ids in cols["response_token_ids"]]
        return EngineOutput(**cols, response_text=texts, tokens=int(sum(sum(e.mask) for e in eps)),
                            policy_version=self.version, seconds=time.perf_counter() - t0)

    async def generate_groups(self, groups: list[tuple], n: int, temperature: float, top_p: float, max_tokens: int):
        """(key, prompt ids, seed[, episode]) per group, all in flight at once; an async generator (call it with
        num_returns="streaming") yielding [(key, group output), ...]: every group finished since the
        last yield, so a busy engine sends few, larger messages."""
        pending = {asyncio.ensure_future(self.generate_group(g[1], g[2], n, temperature, top_p, max_tokens, *g[3:])): g[0]
                   for g in groups}
        try:
            while pending:
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                yield [(pending.pop(f), f.result()) for f in done]
        finally:  # the caller went away: abort what is left
            for f in pending:
                f.cancel()

    async def generate(self, prompt_token_ids: list[list[int]], seeds: list[int], n: int, temperature: float,
                       top_p: float, max_tokens: int) -> EngineOutput:
        """n samples per prompt, all prompts in one call (groups in prompt order)."""
        t0 = time.perf_counter()
        groups = await asyncio.gather(*[self.generate_group(p, s, n, temperature, top_p, max_tokens)
                                        for p, s in zip(prompt_token_ids, seeds)])
        return EngineOutput.join(groups, self.version, time.perf_counter() - t0)

    async def prompt_logprobs(self, token_ids: list[list[int]]) -> list[np.ndarray]:
        """Full next-token log-prob distributions at every prompt position >= 1 ([T-1, V] each)."""
        from vllm import SamplingParams

        vocab = self._engine().model_config.get_vocab_size()
        params = SamplingParams(max_tokens=1, temperature=1.0, prompt_logprobs=vocab)
        outs = await asyncio.gather(*[self._request(t, params) for t in token_ids])
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

    async def probe_logprobs(self, token_ids: list[int]) -> np.ndarray:
        """The log-prob of each token of a fixed text after the first, under the weights served now
        (rlsys/sync/check.py: did the sync reach this engine?)."""
        from vllm import SamplingParams

        out = await self._request(token_ids, SamplingParams(max_tokens=1, temperature=1.0, prompt_logprobs=0))
        return np.asarray([pos[t].logprob for pos, t in zip(out.prompt_logprobs[1:], token_ids[1:])], dtype=np.float64)

    async def skip_next_sync(self) -> None:
        """A drill: this engine answers the next sync's calls without loading anything, as an engine whose
        sync was lost would (the weight checks must catch it; tests/integration/test_lora.py)."""
        await (await self._ready()).collective_rpc("rlsys_skip_next_sync")

    # ---- weight sync (called by the sync backend) ----------------------------------------------
    async def begin_weight_update(self, version: int) -> None:
        await (await self._ready()).collective_rpc("rlsys_begin_weight_update")

    async def load_weights(self, bucket: Bucket, version: int) -> EngineLoad:
        """One bucket; the one marked last also finishes the sync (see finish_weight_update). A sync's
        buckets arrive as concurrent calls, and Ray does not keep an async actor's calls in order: each
        waits for the one before it, so the last is loaded last and the version flips when all are in."""
        if bucket.data is not None:
            bucket = self._relay(bucket)
        llm = await self._ready()
        self._loaded = self._loaded or asyncio.Condition()
        async with self._loaded:
            await self._loaded.wait_for(lambda: self._next_bucket.get(bucket.sync, 0) == bucket.index)
        try:
            stats = _merge(await llm.collective_rpc("rlsys_load_weights", args=(bucket.wire(),)))
        finally:
            async with self._loaded:
                self._next_bucket = {bucket.sync: bucket.index + 1}  # earlier syncs are over
                self._loaded.notify_all()
        if bucket.last:
            await self._new_version(version, stats.adapter)
        return stats

    def _relay(self, bucket: Bucket) -> Bucket:
        """A bucket that came as bytes (a Ray object from another node): one copy into this node's
        shared memory, which the engine maps, instead of vLLM's msgpack RPC (several copies). The
        sender keeps at most SLOTS buckets in flight, so a slot is free again when it comes round."""
        from rlsys.sync.object_store import SLOTS
        from rlsys.sync.shm import ShmRing

        self._ring = getattr(self, "_ring", None) or ShmRing(SLOTS)
        self._relayed = getattr(self, "_relayed", -1) + 1
        data = np.frombuffer(bucket.data, dtype=np.uint8)
        path, buf = self._ring.slot(self._relayed % len(self._ring), data.size)
        np.copyto(buf[:data.size].numpy(), data)
        return replace(bucket, data=None, path=path)

    async def finish_weight_update(self, version: int) -> EngineLoad:
        stats = _merge(await (await self._ready()).collective_rpc("rlsys_finish_weight_update"))
        await self._new_version(version, stats.adapter)
        return stats

    async def _new_version(self, version: int, adapter: dict | None = None) -> None:
        """adapter: the LoRA adapter the sync registered (its name and id, rlsys/rollout/extension.py):
        requests run with it from now on."""
        if adapter is not None:
            from vllm.lora.request import LoRARequest

            # the path is never read: the adapter is in every worker's manager under this id already
            self.adapter = LoRARequest(adapter["name"], adapter["id"], lora_path=adapter["name"])
        await self._engine().reset_prefix_cache()  # cached KV blocks were computed by the old weights
        await self._engine().update_weight_version(str(version))  # the label vLLM gives each token it samples
        self.version = version

    async def pause_generation(self) -> None:
        """An in-flight weight update begins (trainer.in_flight_updates): running requests stop between two
        engine steps and keep their place; their KV cache is dropped, so on resume it is recomputed by the
        new weights (every token after the swap is sampled by them alone, as its log-prob says)."""
        await (await self._ready()).pause_generation(mode="keep", clear_cache=True)

    async def resume_generation(self) -> None:
        """The update is over (or failed): requests go on, their new tokens labelled with self.version."""
        await (await self._ready()).resume_generation()

    async def shared_weights(self) -> dict | None:
        """The weights file the sender may write itself (rollout.cpu_gemm=plain), or None."""
        out = await (await self._ready()).collective_rpc("rlsys_shared_weights")
        return out[0] if len(out) == 1 else None

    async def hold_for_writes(self, weights_path: str, version: int, sender_pid: int,
                              timeout_s: float) -> EngineLoad:
        """One sync written by the sender into the shared weights file (rlsys/sync/direct_write.py)."""
        args = (weights_path, sender_pid, timeout_s)
        [out] = await (await self._ready()).collective_rpc("rlsys_hold_for_writes", args=args)  # one worker (TP 1)
        load = _merge([out])
        if load.written:
            await self._new_version(version)
        return load

    async def node_id(self) -> str | None:
        """This actor's Ray node: the sender hands buckets over in shared memory on its own node."""
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None

    async def set_sync_mode(self, mode: str) -> None:
        """direct (default), plain or layerwise (rlsys/rollout/extension.py)."""
        await (await self._ready()).collective_rpc("rlsys_set_sync_mode", args=(mode,))

    async def peak_memory_gb(self) -> float:
        """Peak memory of this engine (the actor and its engine processes) since the last call."""
        from rlsys.runtime.memory import peak_gb, reset_peak

        peak = peak_gb(with_children=True)
        reset_peak(with_children=True)
        return peak

    def root_cause(self) -> str | None:
        """The first exception its engine processes logged (type, message and where), if any."""
        try:
            text = open(self.error_log).read()
        except OSError:
            return None
        return root_cause(text)

    async def shutdown(self) -> None:
        """Stop the engine core now (for callers that drive the worker without Ray), on the loop that
        served it: called from outside that loop, AsyncLLM only schedules the closing of its zmq sockets
        there, and a later gc of the context then blocks forever in zmq's term (measured: a CI hang)."""
        if self.llm is not None:
            self.llm.shutdown()
            self.llm = None
            await asyncio.sleep(0)  # let its cancelled output task finish before the caller closes the loop
        if self._episodes is not None:
            self._episodes.tools.close()
            self._episodes = None

    async def get_version(self) -> int:
        """Also the readiness probe: the first call builds the engine."""
        await self._ready()
        return self.version

    # ---- speculative decoding, native weight transfer, colocation -----------------------------
    async def spec_counters_delta(self) -> dict[str, int]:
        """Draft / accepted token counts since the last call (zeros without speculative decoding)."""
        from vllm.v1.metrics.reader import get_metrics_snapshot

        from rlsys.rollout.speculative import COUNTERS, read_counters

        if not self._engine().log_stats:
            return dict.fromkeys(COUNTERS.values(), 0)
        now = read_counters(get_metrics_snapshot())
        prev, self._spec_prev = getattr(self, "_spec_prev", dict.fromkeys(now, 0)), now
        return {k: now[k] - prev[k] for k in now}

    async def weight_transfer(self, method: str, payload: dict | None = None) -> None:
        """vLLM's native weight-transfer calls (nccl / ipc backends, rlsys/sync/native.py); AsyncLLM's
        own methods of these names are thin collective_rpc wrappers taking the same keyword payloads."""
        await self._engine().collective_rpc(method, kwargs=payload or {})

    async def set_version(self, version: int) -> int:
        await self._new_version(version)
        return version

    async def draft_checksum(self) -> dict:
        return (await self._engine().collective_rpc("rlsys_draft_checksum"))[0]

    async def sleep(self, level: int) -> None:
        await self._engine().sleep(level=level)

    async def wake(self) -> None:
        await self._engine().wake_up()


def _merge(per_worker: list[dict]) -> EngineLoad:
    """One engine's stats from its TP workers (plain dicts: they cross vLLM's msgpack RPC); they run
    in parallel, so the slowest counts."""
    if not per_worker:
        return EngineLoad()
    first = per_worker[0]
    return EngineLoad(tensors=max(w["tensors"] for w in per_worker), load_s=max(w["load_s"] for w in per_worker),
                      repack_s=max(w["repack_s"] for w in per_worker), start=min(w["start"] for w in per_worker),
                      end=max(w["end"] for w in per_worker), paths=first.get("paths"), written=first.get("written"),
                      digests=_agreed([w.get("digests") for w in per_worker]), adapter=first.get("adapter"))


def _agreed(digests: list[dict | None]) -> dict | None:
    """One engine's checksums from its TP workers: a tensor whose workers disagree gets none (a mismatch)."""
    if any(d is None for d in digests):
        return None
    return {n: h for n, h in digests[0].items() if all(d.get(n) == h for d in digests[1:])}


def _run_model_in_engine_core() -> None:
    """A lone CPU engine (TP 1) runs its model in the engine-core process on every core of the node.

    vLLM's CPU platform otherwise starts a third process for the model, only to set its OpenMP
    threads, and the two busy-poll each other for a second after every message: while the learners
    train, that polling takes cores from them. The engine-core process inherits these variables, as
    vLLM's own worker process would (OpenMP reads them at start-up; Ray set OMP_NUM_THREADS=1 here).
    """
    from rlsys.runtime.threads import node_core_ids

    cores = node_core_ids()
    os.environ.update(VLLM_ENABLE_V1_MULTIPROCESSING="0", OMP_NUM_THREADS=str(len(cores)),
                      GOMP_CPU_AFFINITY=" ".join(map(str, cores)), VLLM_CPU_NUM_OF_RESERVED_CPU="0")


def _log_engine_errors() -> str:
    """Have every vLLM process of this engine (engine core, workers) also write its errors to a file.

    They are separate processes: when one dies, the actor only sees EngineDeadError ("see stack
    trace above"). vLLM reads its logging config from VLLM_LOGGING_CONFIG_PATH in each process it
    starts; this is its default config plus one file handler for ERROR records.
    """
    from vllm.logger import DEFAULT_LOGGING_CONFIG

    fd, errors = tempfile.mkstemp(prefix="rlsys-engine-", suffix=".errors.log")
    os.close(fd)
    config = json.loads(json.dumps(DEFAULT_LOGGING_CONFIG))
    config["formatters"]["rlsys_plain"] = {"format": "%(message)s"}
    config["handlers"]["rlsys_errors"] = {"class": "logging.FileHandler", "filename": errors, "level": "ERROR",
                                          "formatter": "rlsys_plain"}
    config["loggers"]["vllm"]["handlers"].append("rlsys_errors")
    path = errors.replace(".errors.log", ".logging.json")
    with open(path, "w") as f:
        json.dump(config, f)
    os.environ["VLLM_LOGGING_CONFIG_PATH"] = path
    return errors


_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Exit|Interrupt)\b.*")


def root_cause(log_text: str) -> str | None:
    """The first exception in an engine's error log, with the innermost frame that raised it."""
    frame = None
    for line in log_text.splitlines():
        if line.lstrip().startswith('File "'):
            frame = line.strip()
        elif _EXCEPTION_LINE.match(line.strip()) and not line.startswith("Traceback"):
            return f"{line.strip()} ({frame})" if frame else line.strip()
    return None


def _unpack(outputs, version: int = 0) -> EngineOutput:
    ids, logps, reasons, texts, versions = [], [], [], [], []
    for out in outputs:
        for c in sorted(out.outputs, key=lambda c: c.index):
            tok = list(c.token_ids)
            ids.append(np.asarray(tok, dtype=np.int64))
            logps.append(np.asarray([lp[t].logprob for lp, t in zip(c.logprobs, tok)], dtype=np.float32))
            reasons.append("stop" if c.finish_reason == "stop" else str(c.finish_reason))
            texts.append(c.text)
            versions.append(token_versions(getattr(c, "weight_versions", None), len(tok), version))
    return EngineOutput(response_token_ids=ids, behaviour_logprobs=logps, finish_reason=reasons,
                        response_text=texts, tokens=int(sum(len(x) for x in ids)), token_versions=versions)


def token_versions(spans, length: int, version: int) -> np.ndarray:
    """The version of each sampled token from vLLM's spans (labels set by _new_version); tokens no span
    covers, or labelled before any sync ("default"), get `version` when there was no span, else 0."""
    out = np.full(length, version if not spans else 0, dtype=np.int64)
    for s in spans or []:
        if str(s.version).isdigit():
            out[s.start:s.end] = int(s.version)
    return out
