"""Weight sync into a running vLLM model, written straight into the engine's own storage.

A probe runs the model's own `load_weights` once per new HF name with recording weight loaders,
so the name -> (parameter, shard id) map is vLLM's (stacked q/k/v and gate/up, renames, tied
embeddings), never re-derived here; it is kept for the engine's lifetime. Then per tensor:
  plain parameter (norms, embeddings, biases; every linear on GPU)
      its own weight_loader writes it in place
  CPU linear (vLLM packed its weight into a `cpu_linear` closure and dropped the weight)
      packed again straight from the received bytes when the tensor, or a fused layer's shards
      lying back to back, are the whole weight (checked once against the layer's own
      weight_loader); otherwise the shards go through that weight_loader, with their shard ids,
      into a reused staging buffer, packed once complete
  anything else (quantized methods, attention layers, unknown modules)
      vLLM's layerwise reload, for that layer only
A kernel packing a written weight it shares (the tied lm_head) is packed again after the bucket.

Mode "plain" (rollout.cpu_gemm=plain) trades generation speed for sync speed: the first sync that
brings a CPU linear's whole weight keeps it in the checkpoint layout, read by oneDNN's matmul, so
the linear becomes a plain parameter and each later sync is an in-place copy with no re-pack
(the tied lm_head reads the embedding the same way). It is one-way for the engine's lifetime.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

_PLAIN_METHODS = {"UnquantizedLinearMethod", "UnquantizedEmbeddingMethod"}


@dataclass
class Route:
    kind: str  # param | packed | layerwise
    module: torch.nn.Module | None
    param: torch.Tensor | None = None
    loader: object = None
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    kernels: list = field(default_factory=list)  # modules whose cpu_linear packs this param
    src_shape: tuple = ()  # the received tensor's shape and dtype (shared_weights.py records with them)
    src_dtype: torch.dtype | None = None


def _owners(model) -> dict[int, list[tuple[torch.nn.Module, str]]]:
    out: dict[int, list] = {}
    for m in {id(m): m for m in model.modules()}.values():
        for attr, p in m._parameters.items():
            if p is not None:
                out.setdefault(id(p), []).append((m, attr))
    return out


def _plain(module) -> bool:
    """Loading a weight is all this module needs: no quantization, no processing after loading
    other than CPU GEMM packing."""
    from vllm.model_executor.layers.attention import is_deferred_attention_layer

    qm = getattr(module, "quant_method", None)
    return (qm is None or type(qm).__name__ in _PLAIN_METHODS) and not is_deferred_attention_layer(module)


def _template(module) -> torch.Tensor | None:
    """The model-format weight (meta tensor with its class and loader) vLLM recorded at start."""
    from vllm.model_executor.model_loader.reload.layerwise import get_layerwise_info

    return get_layerwise_info(module).restore_metadata[0].get("weight")


def _unwrapped(loader):
    """The loader itself: a layerwise reload wraps loaders (and leaves its wrapper on the templates
    it recorded at start), and the wrapper defers or drops loads outside that reload."""
    while getattr(loader, "__name__", "") == "online_process_loader":
        loader = loader.__wrapped__
    return loader


def _holds(fn, t: torch.Tensor) -> bool:
    """Does a kernel closure keep a tensor sharing t's storage (so t must not be reused)?"""
    ptr = t.untyped_storage().data_ptr()
    return any(isinstance(c.cell_contents, torch.Tensor) and c.cell_contents.untyped_storage().data_ptr() == ptr
               for c in getattr(fn, "__closure__", None) or ())


class DirectLoader:
    def __init__(self, model, model_config):
        self.model, self.model_config, self.mode = model, model_config, "direct"  # | plain | layerwise
        self.routes: dict[str, list[Route]] = {}
        self.concat_ok: dict[torch.nn.Module, bool] = {}  # back-to-back shards == the loader's result
        self.pool: dict[tuple, list[torch.Tensor]] = {}  # staging buffers, reused across layers and syncs
        self.begin()

    def begin(self) -> None:
        self.counts = dict.fromkeys(("in_place", "packed_from_wire", "packed_from_staging", "layerwise"), 0)
        self.pending: dict[torch.nn.Module, tuple[torch.Tensor, int]] = {}  # staging, elements loaded
        self.layerwise: dict[torch.nn.Module, None] = {}  # ordered set of layers on vLLM's reload

    # ---- the name map ---------------------------------------------------------------------------
    def _probe(self, named: list[tuple[str, torch.Tensor]]) -> None:
        new = [(n, t) for n, t in named if n not in self.routes]
        if not new:
            return
        from vllm.model_executor.model_loader.weight_utils import default_weight_loader

        calls: list = []
        params = {id(p): p for p in self.model.parameters()}
        saved = {i: p.__dict__.get("weight_loader") for i, p in params.items()}
        owners = _owners(self.model)
        try:
            for p in params.values():
                p.weight_loader = lambda param, loaded, *a, **k: calls.append((param, a, k))
            for name, t in new:
                calls.clear()
                self.model.load_weights([(name, torch.empty((), dtype=t.dtype).expand(t.shape))])
                self.routes[name] = [self._route(p, _unwrapped(saved.get(id(p)) or default_weight_loader), a, k, owners)
                                     for p, a, k in calls]
                for r in self.routes[name]:
                    r.src_shape, r.src_dtype = tuple(t.shape), t.dtype
        finally:
            for i, p in params.items():
                if saved[i] is None:
                    p.__dict__.pop("weight_loader", None)
                else:
                    p.weight_loader = saved[i]

    def _route(self, param, loader, args, kwargs, owners) -> Route:
        mods = owners.get(id(param), [])
        module = mods[0][0] if mods else None
        if module is None or not all(_plain(m) for m, _ in mods):
            return Route("layerwise", module)
        if param.numel() == 0:  # a CPU linear whose weight lives only in its packed kernel
            packed = hasattr(module, "cpu_linear") and _template(module) is not None
            return Route("packed" if packed else "layerwise", module, args=args, kwargs=kwargs)
        kernels = [m for m, attr in mods if attr == "weight" and hasattr(m, "cpu_linear")]
        return Route("param", module, param, loader, args, kwargs, kernels)

    # ---- one bucket -------------------------------------------------------------------------------
    @torch.no_grad()
    def load(self, named: list[tuple[str, torch.Tensor]]) -> float:
        """Write one bucket; returns the seconds spent packing kernels."""
        self.repack_s = 0.0
        self._probe(named)
        packed: dict[torch.nn.Module, list] = {}
        kernels: dict[torch.nn.Module, None] = {}
        layerwise, starting = [], {}
        for name, t in named:
            routes = self.routes[name]
            if self.mode == "layerwise" or any(r.kind == "layerwise" for r in routes):
                layerwise.append((name, t.clone()))  # vLLM holds it until its layer is complete
                self.counts["layerwise"] += 1
                starting.update((r.module, None) for r in routes
                                if r.module is not None and r.module not in self.layerwise)
                continue
            for r in routes:
                if r.kind == "param":
                    r.loader(r.param, t, *r.args, **r.kwargs)
                    self.counts["in_place"] += 1
                    kernels.update(dict.fromkeys(r.kernels))
                else:
                    packed.setdefault(r.module, []).append((t, r))
        for module, shards in packed.items():
            self._load_packed(module, shards)
        for module in kernels:
            self._timed(_repack_shared, self.model, module, self.mode == "plain")
        if layerwise:
            self._load_layerwise(layerwise, starting)
        return self.repack_s

    def _timed(self, fn, *args):
        t0 = time.perf_counter()
        fn(*args)
        self.repack_s += time.perf_counter() - t0

    def _load_layerwise(self, named, starting: dict) -> None:
        """vLLM's reload for these tensors' layers, each layer started once per sync (a layer it
        already completed in an earlier bucket must not go back on the meta device)."""
        from vllm.model_executor.model_loader.reload import initialize_layerwise_reload

        for module in starting:
            initialize_layerwise_reload(module)
        self.layerwise.update(starting)
        self.model.load_weights(named)

    # ---- CPU linears ------------------------------------------------------------------------------
    def _load_packed(self, module, shards: list) -> None:
        template = _template(module)
        view = None if module in self.pending else _whole(shards, template)
        if view is not None and self.concat_ok.get(module) and self.mode != "plain":
            self.counts["packed_from_wire"] += len(shards)
            return self._timed(_pack, module, view)
        staging, done = self.pending.pop(module, None) or (self._staging(module, template), 0)
        for t, r in shards:
            done += _loaded_numel(staging, t, r)
        self.counts["packed_from_staging"] += len(shards)
        if done < template.numel():
            self.pending[module] = (staging, done)  # more shards in a later bucket
            return None
        if view is not None:  # first sync: are back-to-back shards exactly what the loader built?
            self.concat_ok[module] = torch.equal(view, staging)
        if self.mode == "plain":
            return self._keep_plain(module, staging)
        self._timed(_pack, module, staging)
        self.pool.setdefault((tuple(staging.shape), staging.dtype), []).append(staging)
        return None

    def _keep_plain(self, module, weight) -> None:
        """Serve this linear from `weight` (a staging tensor: vLLM's parameter class, its loader bound
        to the layer) with _plain_linear; its routes become in-place writes. The packed copy is freed."""
        module.weight = weight
        module.cpu_linear = _plain_linear
        for routes in self.routes.values():
            for r in routes:
                if r.module is module and r.kind == "packed":
                    r.kind, r.param, r.loader = "param", weight, weight.weight_loader

    def _staging(self, module, template) -> torch.Tensor:
        from vllm.model_executor.model_loader.reload.meta import to_meta_tensor
        from vllm.model_executor.model_loader.reload.sanitize import restore_layer_refs

        free = self.pool.get((tuple(template.shape), template.dtype))
        t = free.pop() if free else torch.empty(template.shape, dtype=template.dtype)
        meta = restore_layer_refs(to_meta_tensor(template), module)  # its loader, bound to this layer
        t.__class__, t.__dict__ = meta.__class__, meta.__dict__
        t.weight_loader = _unwrapped(t.weight_loader)
        return t

    @torch.no_grad()
    def finish(self) -> tuple[float, dict]:
        """Complete the sync (vLLM's reloads, kernels sharing their weights). Returns the seconds
        spent there and how many tensors took each path."""
        from vllm.model_executor.model_loader.reload import finalize_layerwise_reload

        t0 = time.perf_counter()
        for module in self.layerwise:
            finalize_layerwise_reload(module, self.model_config)
        owners = _owners(self.model)
        for module in self.layerwise:  # kernels elsewhere that pack a reloaded weight (tied lm_head)
            for p in module._parameters.values():
                for m, attr in owners.get(id(p), []) if p is not None else []:
                    if m not in self.layerwise and attr == "weight" and hasattr(m, "cpu_linear"):
                        _repack_shared(self.model, m, self.mode == "plain")
        seconds, counts, pending = time.perf_counter() - t0, self.counts, self.pending
        self.begin()
        for module, (staging, done) in pending.items():  # its kernel still holds the previous weights
            raise RuntimeError(f"{type(module).__name__} {getattr(module, 'prefix', '')}: the sync wrote {done} of its "
                               f"{staging.numel()} weight elements (a fused layer's shards must all be sent)")
        return seconds, counts


def _loaded_numel(staging, t, route) -> int:
    """Run the layer's own weight_loader (shard id included) into staging; elements it wrote."""
    from vllm.model_executor.model_loader.reload.meta import CopyCounter

    with CopyCounter() as counter:
        staging.weight_loader(staging, t, *route.args, **route.kwargs)
    return counter.copied_numel


def _whole(shards: list, template) -> torch.Tensor | None:
    """The layer's whole weight as one view of the received buffer, if its shards (in arrival
    order) lie back to back there, cover it exactly and match its dtype and row width."""
    ts = [t for t, _ in shards]
    if (template.dim() != 2 or sum(t.numel() for t in ts) != template.numel()
            or any(t.dtype != template.dtype or t.shape[1:] != template.shape[1:] or not t.is_contiguous()
                   for t in ts)):
        return None
    if any(a.data_ptr() + a.numel() * a.element_size() != b.data_ptr() for a, b in zip(ts, ts[1:])):
        return None
    return ts[0].as_strided(tuple(template.shape), (template.shape[1], 1), ts[0].storage_offset())


def _pack(module, weight: torch.Tensor, private: bool = False) -> None:
    """vLLM's CPU GEMM packing of a whole weight (it drops the weight afterwards, keeping only
    the packed copy). `weight` is borrowed (received bytes, a staging buffer) unless private."""
    from vllm.model_executor.layers.utils import dispatch_cpu_unquantized_gemm

    if not isinstance(weight, torch.nn.Parameter):
        weight = torch.nn.Parameter(weight, requires_grad=False)
    module.weight = weight
    dispatch_cpu_unquantized_gemm(module, remove_weight=True)
    if not private and (module.weight.numel() or _holds(module.cpu_linear, weight)):
        _pack(module, weight.detach().clone(), private=True)  # this kernel reads the weight itself


def _repack_shared(model, module, plain: bool = False) -> None:
    """Refresh a kernel that packed a weight written in place. An embedding that is not the
    lm_head never calls its packed copy (lookups read the weight), and in plain mode nothing is
    packed: they read the live weight."""
    from vllm.model_executor.layers.utils import dispatch_cpu_unquantized_gemm
    from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead

    if not plain and (isinstance(module, ParallelLMHead) or getattr(model, "lm_head", None) is module):
        dispatch_cpu_unquantized_gemm(module, remove_weight=False)
    else:
        module.cpu_linear = _plain_linear


def _plain_linear(x, weight, bias):
    """oneDNN's matmul on the checkpoint layout (torch's own op, as torch.compile uses it): close to
    the packed kernel, where torch's linear goes through MKL's sgemm (1.2-1.6x slower on AMD)."""
    if torch.backends.mkldnn.is_available():
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    return torch.nn.functional.linear(x, weight, bias)
