"""`console`: a progress bar over the run's steps with its ETA and the key metrics.

On a terminal the bar redraws in place; otherwise (a log file, CI, `ray job logs`) it prints one
line every logger.print_every steps. Tables print as a few truncated rows.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

# (logged name, short label, format) of the key metrics shown after the bar
KEY_METRICS = (("critic/score/mean", "score", ".3f"), ("critic/score/accuracy", "acc", ".3f"),
               ("response_length/mean", "len", ".1f"), ("actor/kl_loss", "kl", ".4f"), ("actor/ppo_kl", "kl(beh)", ".1e"),
               ("actor/entropy", "ent", ".3f"), ("timing_s/step", "s/step", ".2f"), ("perf/throughput", "tok/s", ".0f"))


def clock(seconds: float) -> str:
    s = int(max(seconds, 0))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


def progress_line(step: int, total: int, elapsed: float, metrics: dict, width: int = 20) -> str:
    frac = step / max(total, 1)
    bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
    eta = elapsed / max(step, 1) * (total - step)
    keys = " ".join(f"{label} {metrics[k]:{fmt}}" for k, label, fmt in KEY_METRICS
                    if isinstance(metrics.get(k), (int, float)))
    return f"[{bar}] {step}/{total} {frac:4.0%} {clock(elapsed)}<{clock(eta)} | {keys}"


class ConsoleBackend:
    def __init__(self, cfg, run_dir: Path, stream=None):
        self.total, self.every = cfg.trainer.steps, max(1, cfg.logger.print_every)
        self.stream = stream or sys.stdout
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.perf_counter()

    def log(self, metrics: dict, step: int) -> None:
        line = progress_line(step, self.total, time.perf_counter() - self.start, metrics)
        if self.tty:
            end = "\n" if step >= self.total else ""
            self.stream.write("\r\x1b[2K" + line + end)
        elif step % self.every == 0 or step == self.total:
            self.stream.write(line + "\n")
        self.stream.flush()

    def table(self, name: str, columns: list[str], rows: list[list], step: int) -> None:
        if self.tty:
            self.stream.write("\n")
        self.stream.write(f"{name} at step {step}:\n")
        for row in rows[:3]:
            cells = dict(zip(columns, row))
            text = f"  reward {cells.get('reward', 0):.2f} | {cells.get('prompt', '')!r} -> {cells.get('response', '')!r}"
            self.stream.write(text[:160] + "\n")
        self.stream.flush()

    def close(self) -> None:
        pass
