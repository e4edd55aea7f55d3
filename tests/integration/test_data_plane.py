"""Samples never pass through the driver (issue 26): the real controller loop with stand-in engines,
verifiers and learner ranks (benchmarks/scale.py), at two response lengths. What the driver receives
and sends per step is metadata (ids, rewards, lengths, row indices, references): its size does not grow
with the responses, and stays a few hundred bytes per sample. Before the rollout manager every sampled
token came into the driver (1,024 samples: 4.3 MB at 512 tokens, 33.7 MB at 4,096; benchmarks/README.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bytes_through_the_driver_do_not_grow_with_response_length(tmp_path):
    cases = ["4x2x256x64", "4x2x256x2048"]  # engines x ranks x samples/step x max response tokens
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks/scale.py"), "--cases", *cases, "--steps", "3",
                          "--gen-seconds", "0.5", "--train-seconds", "0.2", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = json.loads((tmp_path / "scale.json").read_text())["rows"]
    assert all("failed" not in r for r in rows), rows
    short, long = rows
    assert short["samples"] == long["samples"] == 256
    for r in rows:  # metadata only: a few hundred bytes per sample each way (the samples carry ~1-8 kB of tokens)
        assert 0 < r["mb_in"] * 1e6 / r["samples"] < 400, r
        assert r["mb_out"] * 1e6 / r["samples"] < 400, r
    # 32x longer responses (the stand-ins' payload grows ~32x): the driver's traffic does not
    assert long["mb_in"] < 1.2 * short["mb_in"] and long["mb_out"] < 1.2 * short["mb_out"], rows
    assert long["manager_cpu_s"] > 0  # the samples went to the rollout manager instead
