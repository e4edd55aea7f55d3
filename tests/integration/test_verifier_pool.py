"""The verifier pool as Ray actors: hostile code and a hanging or crashing verifier end with
reward 0 in time, and the pool keeps serving, from several threads at once; `rlsys verify` end to end."""

import json
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from rlsys.config import RLSysConfig, VerifierConfig
from rlsys.data.examples import ATTACKS, SUM_TESTS, demo_rows
from rlsys.verify.worker import VerifierWorker
from tests.conftest import ROOT

TIMEOUT = 2.0
TESTS = json.dumps(SUM_TESTS)
GOOD = "```python\nprint(sum(map(int, input().split())))\n```"


@pytest.fixture(scope="module")
def pool():
    import ray

    from rlsys.runtime.cluster import place_roles
    from rlsys.loop.roles import start_verifiers

    cfg = RLSysConfig()
    cfg.cluster.num_verifiers, cfg.cluster.verifier.cpus = 2, 0.5
    cfg.verifier = VerifierConfig(timeout_s=TIMEOUT, memory_mb=512, concurrency=2, modules=["tests.verifier_plugins"])
    ray.init(num_cpus=2, include_dashboard=False, address="local", runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    try:
        yield start_verifiers(cfg, place_roles(cfg, roles=("verifier",)))
    finally:
        ray.shutdown()


def test_attacks_and_bad_verifiers_end_in_time_and_the_pool_keeps_serving(pool):
    hostile = [f"```python\n{p}\n```" for p in ATTACKS.values()]
    responses = hostile + ["x", "x", "x", GOOD]
    truths = [TESTS] * len(hostile) + ["1", "1", "1", TESTS]
    sources = ["code"] * len(hostile) + ["test_hang", "test_crash", "test_nan", "code"]
    t0 = time.perf_counter()
    rewards, details = pool.score_texts(responses, truths, sources)
    took = time.perf_counter() - t0
    assert rewards.tolist() == [0.0] * (len(sources) - 1) + [1.0], details
    assert all(d.reason for d in details[:-1])
    hang, crash, nan = details[len(hostile):len(hostile) + 3]
    assert hang.timeout and "did not answer" in hang.reason
    assert "crashed" in crash.reason and "exited with code 3" in crash.error
    assert nan.error.startswith("ValueError: verifier returned a non-finite")
    # 4 scorer processes for 11 samples: at most a few timeouts back to back per process.
    assert took < 4 * (TIMEOUT + 2.5), took
    again, _ = pool.score_texts([GOOD, "\\boxed{2}"], [TESTS, "2"], ["code", "math"])
    assert again.tolist() == [1.0, 1.0]


def test_concurrent_small_batches_from_threads(pool):
    out, errors = {}, []

    def call(k):
        try:
            out[k] = pool.score_texts([f"\\boxed{{{k}}}", f"{k}"], [str(k), str(k + 1)], ["math", "arithmetic"])[0]
        except Exception as e:  # pragma: no cover - surfaced below
            errors.append(e)

    threads = [threading.Thread(target=call, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and sorted(out) == list(range(8))
    assert all(np.array_equal(out[k], [1.0, 0.0]) for k in range(8))
    assert pool._in_flight == [0, 0]


def test_a_verifier_actor_killed_mid_call_is_rescored_never_scored_zero(pool):
    """kill -9 of a verifier actor while it scores: its samples are scored again on a live or
    restarted actor, with their real rewards (an infrastructure fault is not a wrong answer)."""
    import os
    import signal

    import ray

    pool.faults.take()
    pids = ray.get([w.pid.remote() for w in pool.workers])
    n = 12  # 0.5 s each, 2 scorer processes per actor: both actors busy for ~1.5 s
    responses = [str(i % 3) for i in range(n)]
    truths = ["0"] * n
    out = {}
    t = threading.Thread(target=lambda: out.update(r=pool.score_texts(responses, truths, ["test_slow"] * n)))
    t.start()
    time.sleep(0.8)
    os.kill(pids[0], signal.SIGKILL)
    t.join(timeout=240)
    rewards, details = out["r"]
    assert rewards.tolist() == [float(r == "0") for r in responses], details
    faults = pool.faults.take()
    assert faults.get("faults/verifier_deaths", 0) >= 1 and "faults/verifier_samples_lost" not in faults, faults
    assert pool._in_flight == [0, 0]


def test_a_stopped_verifier_actor_is_killed_at_its_deadline_and_rescored(pool):
    """SIGSTOP of a verifier actor (alive but stuck) mid-call: past its suspect deadline it does not answer
    a probe, so it is killed (Ray restarts it) and its samples are scored again, with their real rewards."""
    import os
    import signal

    import ray

    from rlsys.runtime.deadlines import FLOOR_S

    n = 12
    responses, truths = [str(i % 3) for i in range(n)], ["0"] * n
    pool.score_texts(responses, truths, ["test_slow"] * n)  # measured: 0.25 s per sample
    pool.faults.take()
    pool.deadlines.scale = 0.1  # a floor of 3 s
    try:
        os.kill(ray.get(pool.workers[0].pid.remote()), signal.SIGSTOP)
        t0 = time.monotonic()
        rewards, details = pool.score_texts(responses, truths, ["test_slow"] * n)
        took = time.monotonic() - t0
    finally:
        pool.deadlines.scale = 1.0
    assert rewards.tolist() == [float(r == "0") for r in responses], details
    assert pool.faults.take() == {"faults/hangs_verifier": 1}
    assert 0.1 * FLOOR_S <= took < 2 * 0.1 * FLOOR_S + 30, took  # suspect + probe, then a restart and a re-score
    assert pool._in_flight == [0, 0]


def test_samples_no_actor_could_score_are_lost_not_zero(pool):
    """Every attempt dies (an actor with no restarts left): NaN rewards marked lost, and
    require_scored refuses them for evaluation."""
    import ray

    from rlsys.verify.pool import VerifierLost, VerifierPool, require_scored

    gone = ray.remote(VerifierWorker).options(num_cpus=0, max_restarts=0).remote(VerifierConfig(concurrency=1))
    ray.get(gone.ready.remote())
    ray.kill(gone, no_restart=True)
    lost_pool = VerifierPool([gone])
    rewards, details = lost_pool.score_texts(["\\boxed{2}", "3"], ["2", "3"], ["math", "arithmetic"])
    assert np.isnan(rewards).all() and all(d.lost for d in details), details
    assert lost_pool.faults.take()["faults/verifier_samples_lost"] == 2
    batch = SimpleNamespace(reward=rewards)
    with pytest.raises(VerifierLost, match="2 of 2 samples could not be scored"):
        require_scored(batch, "pass@k evaluation")


class ChatTokenizer:
    chat_template, name_or_path = "user content only", "stand-in"

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        return messages[-1]["content"]

    def encode(self, text, add_special_tokens=False):
        return [ord(c) for c in text]


def test_verl_extra_info_reaches_verifiers_that_take_it(pool, tmp_path):
    """A verl-format file's extra_info goes with each sample (dataset -> batch -> pool -> scorer)
    to a verifier that declares extra_info; the same answer scores by what each row's asks."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rlsys.data.batch import RolloutBatch
    from rlsys.data.dataset import load_prompts
    from rlsys.rollout.fleet import group_batch
    from rlsys.rollout.worker import EngineOutput

    rows = [{"data_source": "test_extra_info", "prompt": [{"role": "user", "content": f"question {i}"}],
             "ability": "x", "reward_model": {"ground_truth": "-", "style": "rule"},
             "extra_info": {"index": i, "want": "yes" if i % 2 else "no"}} for i in range(4)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "verl.parquet")
    data = load_prompts(tmp_path / "verl.parquet", ChatTokenizer(), {"test_extra_info"}, 64)
    assert [e["index"] for e in data.extra_info] == [0, 1, 2, 3]
    out = EngineOutput(response_token_ids=[np.array([1])] * 2, behaviour_logprobs=[np.zeros(1)] * 2,
                       finish_reason=["stop"] * 2, response_text=["yes", "no"], tokens=2, policy_version=0)
    batch = pool.score(RolloutBatch.concat([group_batch(data, pid, pid, out) for pid in range(4)]))
    assert batch.reward.tolist() == [0, 1, 1, 0, 0, 1, 1, 0]  # "yes" scores on odd rows, "no" on even ones
    assert batch.verifier_details[2].extra["saw"] == {"index": 1, "want": "yes"}
    plain = pool.score_texts(["yes"], ["-"], ["test_extra_info"])[0]  # a row without extra_info: None
    assert plain.tolist() == [0.0]


def test_rlsys_verify_cli(tmp_path, rlsys_cmd):
    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in demo_rows()))
    out = tmp_path / "out.jsonl"
    proc = subprocess.run([*rlsys_cmd, "verify", str(src), "-o", str(out), f"verifier.timeout_s={TIMEOUT}",
                           "cluster.num_cpus=1"], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["line"] for r in recs] == list(range(1, len(demo_rows()) + 1))
    by_id = {r["id"]: r for r in recs}
    assert [k for k, r in by_id.items() if r["reward"] == 1.0] == ["math-frac", "math-answer-is", "code-ok",
                                                                    "code-asserts", "arith"]
    assert all({"parsed", "reason", "error", "seconds", "timeout"} <= set(r) for r in recs)
    assert "samples/s" in proc.stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"data_source": "nope", "response": "1", "ground_truth": "1"}) + "\n")
    proc = subprocess.run([*rlsys_cmd, "verify", str(bad)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "bad.jsonl line 1: unknown data_source 'nope'" in proc.stderr
