"""Weight-sync backends: learner rank 0 streams full parameters, in buckets, to the fleet.

A backend is a class with one method:
    push(buckets, engines, version, is_sender) -> {"bytes": int, "seconds": float}
`buckets` yields lists of (HF name, full tensor); every learner rank iterates it (the gathers are
collectives) and only the sender moves data. Register new backends in SYNC_BACKENDS.
"""

from __future__ import annotations

from rlsys.sync.object_store import ObjectStoreSync

SYNC_BACKENDS = {"object_store": ObjectStoreSync}
