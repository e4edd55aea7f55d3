"""A weight bucket on the wire: one flat byte buffer plus names, dtypes and shapes.

Plain bytes cross every hop intact (Ray's object store, vLLM's msgpack RPC, which would turn
untyped tensors into lists) and cost one contiguous copy per bucket.
"""

from __future__ import annotations

import numpy as np
import torch

_ALIGN = 16
_DTYPES = {str(d): d for d in (torch.float32, torch.bfloat16, torch.float16, torch.float64,
                               torch.int64, torch.int32, torch.uint8, torch.bool)}


def pack_bucket(named: list[tuple[str, torch.Tensor]]) -> dict:
    names, dtypes, shapes, offsets, total = [], [], [], [], 0
    for name, t in named:
        names.append(name)
        dtypes.append(str(t.dtype))
        shapes.append(list(t.shape))
        total = -(-total // _ALIGN) * _ALIGN  # aligned, so every slice can be viewed as its dtype
        offsets.append(total)
        total += t.numel() * t.element_size()
    data = np.zeros(total, dtype=np.uint8)
    for (_, t), off in zip(named, offsets):
        raw = t.detach().contiguous().view(-1).view(torch.uint8).numpy()
        data[off:off + raw.size] = raw
    return {"names": names, "dtypes": dtypes, "shapes": shapes, "offsets": offsets, "data": data.tobytes()}


def unpack_bucket(bucket: dict) -> list[tuple[str, torch.Tensor]]:
    buf = torch.frombuffer(bytearray(bucket["data"]), dtype=torch.uint8)
    out = []
    for name, dt, shape, off in zip(bucket["names"], bucket["dtypes"], bucket["shapes"], bucket["offsets"]):
        dtype = _DTYPES[dt]
        n = int(np.prod(shape)) * torch.empty((), dtype=dtype).element_size()
        out.append((name, buf[off:off + n].view(dtype).reshape(shape)))
    return out


def bucket_nbytes(bucket: dict) -> int:
    return len(bucket["data"])
