"""A weight bucket on the wire: one flat byte buffer plus names, dtypes and shapes.

Plain bytes cross every hop intact (Ray's object store, vLLM's msgpack RPC, which would turn
untyped tensors into lists) and cost one contiguous copy per bucket.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

_ALIGN = 16
_DTYPES = {str(d): d for d in (torch.float32, torch.bfloat16, torch.float16, torch.float64,
                               torch.int64, torch.int32, torch.uint8, torch.bool)}


def iter_buckets(model: torch.nn.Module, bucket_mb: int, keep: bool = True) -> Iterator[list[tuple[str, torch.Tensor]]]:
    """Full parameters under their HF names, gathered one at a time into ~bucket_mb buckets.

    Every rank must iterate (an FSDP2 gather is a collective); ranks that do not send pass
    keep=False and drop each gathered tensor at once. Only one bucket of full tensors exists at a
    time, never a second full copy of the model; CPU tensors are not copied here at all.
    """
    limit, bucket, size = bucket_mb * 2**20, [], 0
    for name, param in model.named_parameters():
        full = param.full_tensor() if hasattr(param, "full_tensor") else param
        if not keep:
            del full
            continue
        full = full.detach().to("cpu")
        bucket.append((name, full))
        size += full.numel() * full.element_size()
        if size >= limit:
            yield bucket
            bucket, size = [], 0
    if bucket:
        yield bucket


def plan_buckets(sizes: list[int], bucket_bytes: int) -> list[list[int]]:
    """Indices of the tensors in each bucket, as iter_buckets cuts them (a bucket closes once it
    reaches bucket_bytes, so one tensor larger than a bucket travels alone)."""
    plan, cur, size = [], [], 0
    for i, s in enumerate(sizes):
        cur.append(i)
        size += s
        if size >= bucket_bytes:
            plan.append(cur)
            cur, size = [], 0
    return plan + ([cur] if cur else [])


def pack_bucket(named: list[tuple[str, torch.Tensor]]) -> dict:
    names, dtypes, shapes, offsets, total = [], [], [], [], 0
    for name, t in named:
        names.append(name)
        dtypes.append(str(t.dtype))
        shapes.append(list(t.shape))
        total = -(-total // _ALIGN) * _ALIGN  # aligned, so every slice can be viewed as its dtype
        offsets.append(total)
        total += t.numel() * t.element_size()
    data = bytearray(total)  # filled in place: the one copy a bucket costs on the sender
    view = np.frombuffer(data, dtype=np.uint8)
    for (_, t), off in zip(named, offsets):
        raw = t.detach().contiguous().view(-1).view(torch.uint8).numpy()
        view[off:off + raw.size] = raw
    del view
    return {"names": names, "dtypes": dtypes, "shapes": shapes, "offsets": offsets, "data": data}


def unpack_bucket(bucket: dict) -> list[tuple[str, torch.Tensor]]:
    data = bucket["data"]
    buf = torch.frombuffer(data if isinstance(data, bytearray) else bytearray(data), dtype=torch.uint8)
    out = []
    for name, dt, shape, off in zip(bucket["names"], bucket["dtypes"], bucket["shapes"], bucket["offsets"]):
        dtype = _DTYPES[dt]
        n = int(np.prod(shape)) * torch.empty((), dtype=dtype).element_size()
        out.append((name, buf[off:off + n].view(dtype).reshape(shape)))
    return out


def bucket_nbytes(bucket: dict) -> int:
    return len(bucket["data"])
