"""The control channel of a sync to the engines on the sender's node: one engine call per sync.

Bucket bytes already travel through the shared-memory ring (rlsys/sync/shm.py); what is left
per bucket is telling the engine where it is and hearing back that its slot is free. Through
Ray and vLLM's RPC (actor -> engine core -> worker) that costs milliseconds per bucket, and the
engine core forwards one call at a time, so those milliseconds add up on the critical path.
Instead the sender opens a Unix socket next to its ring and makes one call per engine per sync;
each engine worker connects and then streams: bucket descriptor in (a few KB of JSON), ack out.
A dead peer closes the socket, so neither side can wait forever on the other.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time
import uuid
import weakref

from rlsys.sync.shm import SHM_DIR, _unlink

_LEN = struct.Struct("!I")
ACCEPT_TIMEOUT_S = 600.0  # engines reach the call once their current request batch is done


def send_msg(sock: socket.socket, obj) -> None:
    data = json.dumps(obj).encode()
    sock.sendall(_LEN.pack(len(data)) + data)


def recv_msg(sock: socket.socket):
    (n,) = _LEN.unpack(_recv_exact(sock, _LEN.size))
    return json.loads(_recv_exact(sock, n))


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("the other side of the weight-sync stream went away")
        buf += chunk
    return bytes(buf)


def connect(path: str, hello: dict) -> socket.socket:
    """Engine worker side: join the sender's stream and say who this is."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    send_msg(sock, hello)
    return sock


class Listener:
    """Sender side: a Unix socket in /dev/shm, kept for the sender's lifetime."""

    def __init__(self, root: str = SHM_DIR):
        self.path = os.path.join(root, f"rlsys-sync-{os.getpid()}-{uuid.uuid4().hex[:8]}.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self._finalizer = weakref.finalize(self, _unlink, [self.path])

    def accept(self, n: int, check_alive) -> list[tuple[dict, socket.socket]]:
        """n connections, each with its hello; check_alive() raises if a call failed before connecting."""
        conns, deadline = [], time.monotonic() + ACCEPT_TIMEOUT_S
        try:
            while len(conns) < n:
                try:
                    conn, _ = self.sock.accept()
                except socket.timeout:
                    check_alive()
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{n - len(conns)} engine workers never joined the weight sync")
                    continue
                conn.settimeout(None)
                conns.append((recv_msg(conn), conn))
        except BaseException:
            for _, c in conns:
                c.close()
            raise
        return conns

    def close(self) -> None:
        self.sock.close()
        self._finalizer()


class EngineStreams:
    """One sync's streams to the engines on this node: the engine calls start at once (their
    latency overlaps the packing of the first bucket), the workers join on the first send."""

    def __init__(self, listener: Listener, engines: list[tuple[int, object]], sync_id: str, version: int, tp: int):
        self.listener, self.n, self.conns = listener, len(engines) * tp, {}
        self.calls = [e.stream_weights.remote(listener.path, sync_id, i, version) for i, e in engines]

    def _check_alive(self) -> None:
        import ray

        done, _ = ray.wait(self.calls, num_returns=len(self.calls), timeout=0)
        if done:
            ray.get(done)  # raises the engine's error
            raise RuntimeError("an engine's weight stream ended before it joined")

    def send(self, engine: int, wire: dict) -> "StreamAck":
        if not self.conns:
            for hello, conn in self.listener.accept(self.n, self._check_alive):
                self.conns.setdefault(hello["engine"], []).append(conn)
        for conn in self.conns[engine]:
            send_msg(conn, wire)
        return StreamAck(self.conns[engine], self)

    def finish(self) -> list[dict]:
        """The engine calls' results (each engine has taken the new version when they return)."""
        import ray

        return ray.get(self.calls)

    def close(self) -> None:
        for conns in self.conns.values():
            for conn in conns:
                conn.close()


class StreamAck:
    """An engine's reply to one bucket: the next ack from each of its workers (TP ranks)."""

    def __init__(self, conns: list[socket.socket], streams: EngineStreams):
        self.conns, self.streams = conns, streams

    def result(self) -> dict:
        try:
            acks = [recv_msg(c) for c in self.conns]
        except ConnectionError:
            self.streams.finish()  # raises the engine's own error, if that is why it went away
            raise
        out = {k: max(a[k] for a in acks) for k in ("load_s", "repack_s", "end")}
        return {**acks[0], **out, "start": min(a["start"] for a in acks)}
