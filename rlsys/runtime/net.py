"""Network helpers shared by roles (a leaf module: no rlsys imports)."""

from __future__ import annotations

import socket


def free_address() -> tuple[str, int]:
    """This host's address and a free TCP port, for rank 0's rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        port = s.getsockname()[1]
    try:
        import ray

        host = ray.util.get_node_ip_address() if ray.is_initialized() else "127.0.0.1"
    except ImportError:
        host = "127.0.0.1"
    return host, port
