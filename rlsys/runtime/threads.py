"""torch intra-op threads per role, and measured core use.

Ray starts every actor with OMP_NUM_THREADS=1, so torch computes on one thread unless told
otherwise. A role gets the CPUs its placement bundle holds (at least 1). With cluster.threads=auto,
a stage that runs alone on its node in the synchronous loop may use the cores the idle stages
hold: the learner ranks share the node's cores while they train (nothing else runs then), and
the reference takes them for a call made after generation has finished. A call that overlaps
another stage (the reference while the engines generate) keeps its placement's share, so the
node is not oversubscribed.
"""

from __future__ import annotations

import math
import os
import time

import torch


def node_core_ids() -> list[int]:
    """Ids of the cores this process may run on (its CPU affinity), i.e. the node's unless pinned."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def node_cores() -> int:
    """Cores this process may run on (its CPU affinity), i.e. the node's unless pinned."""
    return len(node_core_ids())


def placement_threads(cpus: float) -> int:
    """Threads for a placement bundle of `cpus` CPUs (fractions round down, at least 1)."""
    return max(1, math.floor(cpus + 1e-9))


def stage_threads(mode: str, cpus: float, alone: bool, peers_on_node: int = 1) -> int:
    """Threads for one call: the placement's share, or with mode auto and the stage alone on the
    node, an equal share of the node's cores among the stage's actors there (never less than the
    placement's)."""
    own = placement_threads(cpus)
    if mode != "auto" or not alone:
        return own
    return max(own, node_cores() // max(1, peers_on_node))


def set_threads(n: int) -> int:
    """Set torch's intra-op threads (the process's OMP pool); returns the previous count."""
    previous = torch.get_num_threads()
    if n != previous:
        torch.set_num_threads(n)
    return previous


class CoreUse:
    """Context manager: cores this process kept busy = process CPU time / wall time."""

    def __enter__(self) -> "CoreUse":
        self.cpu0, self.wall0 = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.cpu = time.process_time() - self.cpu0
        self.wall = time.perf_counter() - self.wall0

    @property
    def cores(self) -> float:
        return self.cpu / max(self.wall, 1e-9)
