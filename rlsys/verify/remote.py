"""Remote verifier: POST {"response", "ground_truth", "data_source", "extra_info"} as JSON to
verifier.remote_url (extra_info: the row's, verl datasets; null when it has none).

The service answers JSON with a numeric "reward" (finite); its other keys become the details
(a "reason" key is shown as the reason). Any HTTP error, timeout or malformed reply is reward 0
with the error recorded. Rows use data_source "remote".
"""

from __future__ import annotations

import json
import math
import urllib.request

from rlsys.verify.registry import register_verifier, settings

MAX_REPLY_BYTES = 1 << 20


@register_verifier("remote")
def remote_endpoint(response: str, ground_truth: str, extra_info: dict | None = None) -> tuple[float, dict]:
    cfg = settings()
    if not cfg.remote_url:
        raise ValueError("data_source 'remote' needs verifier.remote_url")
    body = json.dumps({"response": response, "ground_truth": ground_truth, "data_source": "remote",
                       "extra_info": extra_info}, default=str).encode()
    req = urllib.request.Request(cfg.remote_url, data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=cfg.timeout_s) as reply:
        data = json.loads(reply.read(MAX_REPLY_BYTES))
    if not isinstance(data, dict) or "reward" not in data:
        raise ValueError(f"reply from {cfg.remote_url} has no 'reward': {str(data)[:200]}")
    reward = float(data["reward"])
    if not math.isfinite(reward):
        raise ValueError(f"reply from {cfg.remote_url} has a non-finite reward {data['reward']!r}")
    details = {k: v for k, v in data.items() if k != "reward"}
    details.setdefault("reason", "remote")
    return reward, details
