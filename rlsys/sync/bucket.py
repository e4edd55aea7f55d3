"""A weight bucket on the wire: tensors laid out in one flat byte buffer, plus names, dtypes, shapes
and offsets.

Plain bytes cross every hop intact (a shared-memory file, Ray's object store, vLLM's msgpack RPC,
which would turn untyped tensors into lists). The sender writes each tensor into the buffer once
(`pack_into`: the one copy a bucket costs, dtype cast included) and the engine reads zero-copy
views of it (`unpack_bucket`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, fields

import numpy as np
import torch

_ALIGN = 16  # every slice can be viewed as its dtype; equal-sized matrices stay back to back
_DTYPES = {str(d): d for d in (torch.float32, torch.bfloat16, torch.float16, torch.float64,
                               torch.int64, torch.int32, torch.uint8, torch.bool)}


def sync_params(model: torch.nn.Module, skip_frozen: bool, lora=None) -> list[tuple[str, torch.nn.Parameter]]:
    """The parameters a sync sends, HF-named: frozen ones (requires_grad False) never change after
    the engines load the checkpoint, so they can stay home. Same list on every rank.
    lora (learner.lora, rank > 0): the adapters only, or with lora.merge each adapted linear's merged
    weight (rlsys/learner/lora.py), under the base checkpoint's name."""
    if lora is not None and lora.rank > 0:
        from rlsys.learner.lora import adapter_params, merged_params, scale

        return merged_params(model, scale(lora)) if lora.merge else adapter_params(model)
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad or not skip_frozen]


def wire_dtype(t: torch.Tensor | torch.nn.Parameter, dtype: torch.dtype | None) -> torch.dtype:
    """Floating tensors travel in `dtype` (the engine's) when given; others as they are."""
    return dtype if dtype is not None and t.dtype.is_floating_point else t.dtype


def _group(name: str) -> str:
    """The module a parameter's layer sits in (q/k/v share `...self_attn`): buckets never split it,
    so an engine gets every shard of a fused layer in one bucket."""
    return name.rsplit(".", 2)[0]


def plan_buckets(sizes: list[int], bucket_bytes: int, groups: list[str] | None = None) -> list[list[int]]:
    """Indices of the tensors in each bucket: a bucket closes once it reaches bucket_bytes and the
    next tensor starts another group, so one tensor larger than a bucket travels alone."""
    plan, cur, size = [], [], 0
    for i, s in enumerate(sizes):
        cur.append(i)
        size += s
        next_same = groups is not None and i + 1 < len(sizes) and groups[i + 1] == groups[i]
        if size >= bucket_bytes and not next_same:
            plan.append(cur)
            cur, size = [], 0
    return plan + ([cur] if cur else [])


def bucket_plan(params: list[tuple[str, torch.nn.Parameter]], bucket_mb: int,
                dtype: torch.dtype | None = None) -> list[list[int]]:
    sizes = [p.numel() * torch.empty((), dtype=wire_dtype(p, dtype)).element_size() for _, p in params]
    return plan_buckets(sizes, bucket_mb * 2**20, [_group(n) for n, _ in params])


def iter_buckets(model: torch.nn.Module, bucket_mb: int, keep: bool = True, skip_frozen: bool = False,
                 dtype: torch.dtype | None = None, lora=None) -> Iterator[list[tuple[str, torch.Tensor]]]:
    """Full parameters under their HF names, gathered one at a time, in bucket_plan's buckets.

    Every rank must iterate (an FSDP2 gather is a collective); ranks that do not send pass
    keep=False and drop each gathered tensor at once. Only one bucket of full tensors exists at a
    time, never a second full copy of the model; CPU tensors are not copied here at all.
    """
    params = sync_params(model, skip_frozen, lora)
    for idx in bucket_plan(params, bucket_mb, dtype):
        bucket = []
        for i in idx:
            name, param = params[i]
            full = param.full_tensor() if hasattr(param, "full_tensor") else param
            if keep:
                bucket.append((name, full.detach().to("cpu")))
            del full
        if keep:
            yield bucket


@dataclass
class Bucket:
    """One bucket on the wire: where each tensor lies in a flat byte buffer, and where the buffer is."""

    names: list[str]  # HF parameter names, in buffer order
    dtypes: list[str]  # each tensor's wire dtype, e.g. "torch.bfloat16"
    shapes: list[list[int]]  # each tensor's shape
    offsets: list[int]  # each tensor's byte offset in the buffer (aligned to _ALIGN)
    nbytes: int  # bytes the tensors span in the buffer
    sync: str | None = None  # the sync it belongs to: a new id begins a sync on the engine
    last: bool = False  # the sync's last bucket: the engine finishes the sync after loading it
    index: int = 0  # position in its sync: an engine loads a sync's buckets in this order
    checksum: bool = False  # the engine answers the sync's last bucket with sha256 of what it holds (rlsys/sync/check.py)
    version: int = 0  # the policy version the sync brings (names the engine's LoRA adapter)
    lora: dict | None = None  # an adapter sync: its PEFT config (r, lora_alpha, target_modules), on every bucket
    path: str | None = None  # a shared-memory file holding the bytes (engines on the sender's node)
    data: np.ndarray | bytes | None = None  # the bytes themselves (a Ray object, for engines elsewhere)

    def wire(self) -> dict:
        """As a plain dict, for vLLM's msgpack RPC into the engine's workers (without the bytes)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "data"}


def layout(named: list[tuple[str, torch.Tensor]], dtype: torch.dtype | None = None) -> tuple[Bucket, list[int]]:
    """The bucket's metadata (names, wire dtypes, shapes, aligned offsets) and each of its tensors'
    index in `named`: matrices first, vectors (biases, norms) after, so the shards of a fused layer
    (q, k, v weights) lie back to back."""
    order = sorted(range(len(named)), key=lambda i: named[i][1].dim() < 2)
    names, dtypes, shapes, offsets, total = [], [], [], [], 0
    for i in order:
        name, t = named[i]
        dt = wire_dtype(t, dtype)
        total = -(-total // _ALIGN) * _ALIGN
        names.append(name)
        dtypes.append(str(dt))
        shapes.append(list(t.shape))
        offsets.append(total)
        total += t.numel() * torch.empty((), dtype=dt).element_size()
    return Bucket(names, dtypes, shapes, offsets, total), order


def pack_into(named: list[tuple[str, torch.Tensor]], buf: torch.Tensor, bucket: Bucket, order: list[int]) -> None:
    """Write each tensor into its slice of buf (uint8, at least bucket.nbytes): one copy, cast to
    the wire dtype on the way. order: layout's."""
    for i, views in zip(order, wire_views(buf, bucket)):
        views.copy_(named[i][1].detach())


def wire_views(buf: torch.Tensor, bucket: Bucket) -> list[torch.Tensor]:
    out = []
    for dt, shape, off in zip(bucket.dtypes, bucket.shapes, bucket.offsets):
        dtype = _DTYPES[dt]
        n = int(np.prod(shape)) * torch.empty((), dtype=dtype).element_size()
        out.append(buf[off:off + n].view(dtype).reshape(shape))
    return out


def pack_bucket(named: list[tuple[str, torch.Tensor]], dtype: torch.dtype | None = None) -> Bucket:
    """A self-contained bucket: its bytes in `data` (a numpy uint8 array, which Ray stores out of
    band and hands back as a zero-copy view)."""
    bucket, order = layout(named, dtype)
    bucket.data = np.empty(bucket.nbytes, dtype=np.uint8)
    pack_into(named, torch.from_numpy(bucket.data), bucket, order)
    return bucket


def bucket_buffer(bucket: Bucket) -> torch.Tensor:
    """The bucket's bytes as a uint8 tensor, without copying: a mapped shared-memory file or the
    received buffer (read-only buffers are only ever read)."""
    if bucket.path is not None:
        from rlsys.sync.shm import open_shared

        return open_shared(bucket.path)
    data = bucket.data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # non-writable buffer: we never write to it
        if isinstance(data, np.ndarray):
            return torch.from_numpy(data.view(np.uint8).reshape(-1))
        return torch.frombuffer(data, dtype=torch.uint8) if len(data) else torch.empty(0, dtype=torch.uint8)


def unpack_bucket(bucket: Bucket) -> list[tuple[str, torch.Tensor]]:
    """(name, tensor) views into the bucket's buffer, in wire order."""
    return list(zip(bucket.names, wire_views(bucket_buffer(bucket), bucket)))
