"""Peak memory of a role per step: the kernel's resident-set high-water mark (VmHWM), reset at the
start of the measured span, or CUDA's allocator peak on a GPU.

Linux resets VmHWM to the current RSS when "5" is written to /proc/PID/clear_refs, so a step's
peak is measured alone, not the process's lifetime peak.
"""

from __future__ import annotations

from pathlib import Path


def _pids(with_children: bool) -> list[int]:
    import os

    if not with_children:
        return [os.getpid()]
    import psutil

    me = psutil.Process()
    return [me.pid, *(c.pid for c in me.children(recursive=True))]


def reset_peak(with_children: bool = False) -> None:
    """Start a new span: the high-water marks of this process (and its children) drop to now."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    for pid in _pids(with_children):
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        except OSError:  # not Linux, or a child that already exited
            pass


def peak_gb(with_children: bool = False) -> float:
    """Peak memory since reset_peak, in GB: device memory on CUDA, else the largest resident set
    of this process or any child (the vLLM engine's processes are the actor's children)."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 1e9
    peak = 0
    for pid in _pids(with_children):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) * 1024)
        except OSError:
            pass
    return peak / 1e9
