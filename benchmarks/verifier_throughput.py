"""Verifier throughput: samples/s of the pool for math and code with M = 1 and 2 actors.

    .venv/bin/python benchmarks/verifier_throughput.py [--samples 256] [--concurrency 2]

Math: boxed answers (half right, in other forms: 0.5 vs \\frac{1}{2}) of the built-in math set.
Code: a correct stdin/stdout program per built-in code task (3 tests each = 3 sandboxes per sample).
Judged: scale(x) programs against assert test code (one sandbox, program + judge), half right.
Compare two trees side by side: PYTHONPATH=<other checkout> .venv/bin/python benchmarks/verifier_throughput.py
Each run warms the pool with a few samples first; the timed call is one score_texts of all samples.
"""

from __future__ import annotations

import argparse
import json
import time

from rlsys.data.examples import code_rows, math_rows

PROGRAMS = {  # correct answers to the built-in code tasks, by prompt prefix
    "Read two integers": "print(sum(map(int, input().split())))",
    "Read a line": "print(input().strip()[::-1])",
    "Read an integer n": "input()\nprint(max(map(int, input().split())))",
}


def math_samples(n: int):
    rows = math_rows(n, seed=1)
    resp = [f"The result is \\boxed{{{r['ground_truth']}}}" if i % 2 else "\\boxed{0.5}" for i, r in enumerate(rows)]
    return resp, [r["ground_truth"] for r in rows], ["math"] * n


def code_samples(n: int):
    rows = [r for r in code_rows(2 * n, seed=1) if r["ground_truth"].startswith("{")][:n]
    resp = [f"```python\n{next(p for k, p in PROGRAMS.items() if r['prompt'].startswith(k))}\n```" for r in rows]
    assert all(len(json.loads(r["ground_truth"])["tests"]) == 3 for r in rows)
    return resp, [r["ground_truth"] for r in rows], ["code"] * len(rows)


def judged_samples(n: int):
    """Test-code rows (asserts run by the judge against the program's scale(x)), half right."""
    rows = [r for r in code_rows(4 * n, seed=1) if not r["ground_truth"].startswith("{")][:n]
    factor = [int(r["prompt"].split("times ")[1].rstrip(".")) for r in rows]
    resp = [f"```python\ndef scale(x):\n    return {k if i % 2 else k + 1} * x\n```" for i, k in enumerate(factor)]
    return resp, [r["ground_truth"] for r in rows], ["code"] * len(rows)


def main() -> None:
    import ray
    from ray.util.placement_group import remove_placement_group

    from rlsys.runtime.cluster import place_roles
    from rlsys.config import RLSysConfig
    from rlsys.loop.roles import start_verifiers

    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--concurrency", type=int, default=2)
    args = ap.parse_args()
    ray.init(include_dashboard=False)
    print(f"{'verifier':<8}{'M':>3}{'samples':>9}{'seconds':>9}{'samples/s':>11}{'reward':>8}")
    for name, make in (("math", math_samples), ("code", code_samples), ("judged", judged_samples)):
        for m in (1, 2):
            cfg = RLSysConfig()
            cfg.cluster.num_verifiers, cfg.cluster.verifier.cpus = m, 0.5
            cfg.verifier.concurrency = args.concurrency
            groups = place_roles(cfg, roles=("verifier",))
            pool = start_verifiers(cfg, groups)
            resp, truth, src = make(args.samples)
            pool.score_texts(resp[:8], truth[:8], src[:8])  # warm-up
            t0 = time.perf_counter()
            rewards, _ = pool.score_texts(resp, truth, src)
            dt = time.perf_counter() - t0
            print(f"{name:<8}{m:>3}{len(resp):>9}{dt:>9.2f}{len(resp) / dt:>11.1f}{rewards.mean():>8.3f}", flush=True)
            for w in pool.workers:  # its scorer processes exit when the actor is gone
                ray.kill(w)
            remove_placement_group(groups["verifier"][0])
    ray.shutdown()


if __name__ == "__main__":
    main()
