"""The code sandbox against hostile programs, without Ray: each ends with reward 0, a reason,
within its timeout; nothing leaks out."""

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rlsys.config import VerifierConfig
from rlsys.data.examples import ATTACKS
from rlsys.verify import configure
from rlsys.verify.code_tests import code_execution
from rlsys.verify.sandbox import Limits, isolation, run_python

TIMEOUT = 2.0
SUM_TESTS = json.dumps({"tests": [{"input": "1 2\n", "output": "3\n"}]})


@pytest.fixture(scope="module", autouse=True)
def short_timeout():
    configure(VerifierConfig(timeout_s=TIMEOUT, memory_mb=512, max_output_kb=256))
    yield
    configure(VerifierConfig())


def fenced(program: str) -> str:
    return f"Here it is:\n```python\n{program}\n```\n"


def test_correct_program_passes_and_wrong_one_fails():
    assert code_execution(fenced("print(sum(map(int, input().split())))"), SUM_TESTS)[0] == 1.0
    reward, d = code_execution(fenced("print(4)"), SUM_TESTS)
    assert reward == 0.0 and d["reason"] == "test 1/1: wrong output" and d["stdout"] == "4\n"


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_ends_with_zero_reward_a_reason_and_in_time(name, tmp_path):
    program = ATTACKS[name]
    if name == "write outside its dir":
        program = program.replace("/tmp/rlsys_sandbox_escape", str(tmp_path / "escaped"))
    os.environ["RLSYS_SECRET"] = "3"  # the leak would print exactly the expected output
    try:
        t0 = time.perf_counter()
        reward, d = code_execution(fenced(program), SUM_TESTS)
        took = time.perf_counter() - t0
    finally:
        del os.environ["RLSYS_SECRET"]
    assert reward == 0.0, d
    assert d["reason"].startswith("test 1/1: ") and len(d["reason"]) > len("test 1/1: "), d
    assert took < TIMEOUT + 1.5, (name, took)
    assert not (tmp_path / "escaped").exists()
    expected = {"infinite loop": "timeout", "fork bomb": "timeout", "memory bomb": "memory limit",
                "gigabyte of output": "output limit", "close stdout and sleep": "timeout",
                "write outside its dir": "Error: [Errno", "read parent environment": "wrong output"}[name]
    assert expected in d["reason"], d
    if name == "write outside its dir":  # not there at all in the jail; read-only (Landlock) without it
        assert ("FileNotFoundError" if isolation()["jail"] else "PermissionError") in d["reason"], d


def test_no_process_survives_the_sandbox(tmp_path):
    marker = tmp_path / "alive"
    # A grandchild in its own session (escapes the process group) tries to keep writing.
    program = (f"import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(1.5)\n"
               f"    open({str(marker)!r}, 'w').write('x')\nprint('parent done')")
    os.chmod(tmp_path, 0o777)  # writable for the sandbox uid, so only the kill can stop the write
    r = run_python(program, "", Limits(wall_s=TIMEOUT))
    assert r.ok and r.stdout == "parent done\n"
    time.sleep(2.0)
    if isolation()["namespaces"] or isolation()["landlock_abi"]:
        assert not marker.exists()


@pytest.mark.skipif(not isolation()["jail"], reason="no filesystem jail on this machine")
def test_host_files_are_out_of_reach(tmp_path):
    # World-readable rows with expected outputs (what `rlsys verify` or a training parquet holds).
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"tests": {"input": "1 2", "output": "SECRET-3"}}')
    os.chmod(tmp_path, 0o755)
    os.chmod(rows, 0o644)
    program = (f"import os\nprint(sorted(os.listdir('/')))\nfound = []\n"
               f"for top in ('/tmp', '/work', '/root', '/home', '/mnt', '/srv', '/opt', '/var', {str(tmp_path)!r}):\n"
               f"    for d, _, names in os.walk(top):\n"
               f"        found += [os.path.join(d, n) for n in names if n.endswith('.jsonl')]\n"
               f"print(found)\ntry:\n    print(open({str(rows)!r}).read())\nexcept OSError as e:\n    print(type(e).__name__)")
    r = run_python(program, "", Limits(wall_s=5))
    assert r.ok and "SECRET" not in r.stdout and "FileNotFoundError" in r.stdout, r
    top = eval(r.stdout.splitlines()[0])
    assert set(top) <= {"bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "etc", "dev", "proc", "tmp",
                        *(p.strip("/").split("/")[0] for p in (sys.prefix, sys.base_prefix))}, top
    assert r.stdout.splitlines()[1] == "[]"


def test_environment_is_empty_but_for_basics():
    os.environ["RLSYS_SECRET"] = "hunter2"
    try:
        r = run_python("import os\nprint(sorted(os.environ))", "", Limits(wall_s=TIMEOUT))
    finally:
        del os.environ["RLSYS_SECRET"]
    assert r.ok and "RLSYS_SECRET" not in r.stdout and "hunter2" not in r.stdout


@pytest.mark.skipif(not isolation()["namespaces"], reason="no network namespace on this machine")
def test_network_is_off():
    r = run_python("import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=1)", "", Limits(wall_s=TIMEOUT))
    assert not r.ok and "runtime error" in r.reason


def test_parallel_sandboxes_stay_independent():
    progs = [f"print({i} * 2)" for i in range(6)]
    with ThreadPoolExecutor(3) as ex:
        results = list(ex.map(lambda p: run_python(p, "", Limits(wall_s=5)), progs))
    assert [r.stdout for r in results] == [f"{i * 2}\n" for i in range(6)]


def test_sandbox_dirs_are_removed():
    before = set(Path("/tmp").glob("rlsys-sandbox-*"))
    run_python("open('scratch.txt', 'w').write('x' * 100)", "", Limits(wall_s=TIMEOUT))
    assert set(Path("/tmp").glob("rlsys-sandbox-*")) <= before
