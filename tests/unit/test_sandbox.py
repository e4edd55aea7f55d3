"""The code sandbox against hostile programs, without Ray: each ends with reward 0, a reason,
within its timeout; nothing leaks out."""

import ctypes
import errno
import json
import math
import os
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rlsys.config import VerifierConfig
from rlsys.data.examples import ATTACKS
from rlsys.verify import configure
from rlsys.verify.code_tests import code_execution
from rlsys.verify import sandbox
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


def test_sandbox_dirs_are_removed(monkeypatch):
    made = []  # this test's dirs only: other processes may be running sandboxes meanwhile
    mkdtemp = sandbox.tempfile.mkdtemp
    monkeypatch.setattr(sandbox.tempfile, "mkdtemp", lambda *a, **k: made.append(mkdtemp(*a, **k)) or made[-1])
    run_python("open('scratch.txt', 'w').write('x' * 100)", "", Limits(wall_s=TIMEOUT))
    assert made and not any(os.path.exists(d) for d in made)


@pytest.mark.skipif(not isolation()["jail"], reason="no filesystem jail on this machine")
def test_system_dirs_are_read_only_in_the_jail():
    r = run_python("for d in ('/etc', '/usr'):\n    try:\n        open(d + '/rlsys-probe', 'w')\n"
                   "    except OSError as e:\n        print(e.errno)", "", Limits(wall_s=TIMEOUT))
    assert r.ok and r.stdout == f"{errno.EROFS}\n{errno.EROFS}\n", r


# SysV IPC through libc, as a red-team program does it (ctypes; no module of the stdlib wraps it).
LIBC = "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nlibc.shmat.restype = ctypes.c_void_p\n"
IPC_CREAT, IPC_RMID = 0o1000, 0


def _host_ipc(key: int) -> tuple[int, int]:
    """(message queue id, shared-memory id) with this key on the host, -1 where there is none."""
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.msgget(key, 0), libc.shmget(key, 0, 0)


def _free_key() -> int:
    while True:
        key = random.randrange(0x10000000, 0x7FFFFFFF)
        if _host_ipc(key) == (-1, -1):
            return key


@pytest.mark.skipif("ipc" not in isolation().get("unshared", ()), reason="no IPC namespace on this machine")
def test_sysv_ipc_objects_die_with_their_sandbox():
    key = _free_key()
    writer = (LIBC + f"q = libc.msgget({key}, 0o1666)\n"
              "msg = ctypes.create_string_buffer(8 + 16)\nctypes.c_long.from_buffer(msg).value = 1\n"
              "msg[8:14] = b'MSGVAL'\nassert q >= 0 and libc.msgsnd(q, msg, 16, 0) == 0\n"
              f"m = libc.shmget({key}, 4096, 0o1666)\nassert m >= 0\n"
              "ctypes.memmove(libc.shmat(m, None, 0), b'SHMVAL', 6)\nprint('left both')")
    reader = (LIBC + f"q = libc.msgget({key}, 0)\nprint('msg', q, ctypes.get_errno())\n"
              "if q >= 0:\n    msg = ctypes.create_string_buffer(8 + 16)\n"
              "    libc.msgrcv(q, msg, 16, 0, 0o4000)\n    print(msg.raw[8:14])\n"
              f"m = libc.shmget({key}, 0, 0)\nprint('shm', m, ctypes.get_errno())\n"
              "if m >= 0:\n    print(ctypes.string_at(libc.shmat(m, None, 0), 6))")
    try:
        first = run_python(writer, "", Limits(wall_s=TIMEOUT))
        assert first.ok and first.stdout == "left both\n", first
        later = run_python(reader, "", Limits(wall_s=TIMEOUT))
        assert later.ok and later.stdout == f"msg -1 {errno.ENOENT}\nshm -1 {errno.ENOENT}\n", later
        assert _host_ipc(key) == (-1, -1)
        for table in ("msg", "shm"):
            keys = [line.split()[0] for line in Path(f"/proc/sysvipc/{table}").read_text().splitlines()[1:]]
            assert str(key) not in keys, table
    finally:  # a leak must not outlive the test either
        libc = ctypes.CDLL(None, use_errno=True)
        q, m = _host_ipc(key)
        if q >= 0:
            libc.msgctl(q, IPC_RMID, None)
        if m >= 0:
            libc.shmctl(m, IPC_RMID, None)


def test_output_of_non_daemon_threads_is_kept():
    plain = ("import threading, time\ndef main():\n    time.sleep(0.2)\n"
             "    threading.Thread(target=lambda: print(sum(map(int, input().split())))).start()\n"
             "threading.Thread(target=main).start()")
    deep = ("import sys, threading\nthreading.stack_size(2**26)\nsys.setrecursionlimit(10**6)\n"
            "def depth(n):\n    return 0 if n == 0 else 1 + depth(n - 1)\n"
            "def main():\n    a, b = map(int, input().split())\n    print(depth(100000) - 100000 + a + b)\n"
            "threading.Thread(target=main).start()")
    for program in (plain, deep):
        reward, d = code_execution(fenced(program), SUM_TESTS)
        assert reward == 1.0, d
    daemon = "import threading, time\nthreading.Thread(target=time.sleep, args=(60,), daemon=True).start()\nprint(3)"
    r = run_python(daemon, "", Limits(wall_s=TIMEOUT))
    assert r.ok and r.stdout == "3\n" and r.seconds < TIMEOUT, r  # not waited for, as in Python
    stuck = "import threading, time\nthreading.Thread(target=time.sleep, args=(60,)).start()\nprint(3)"
    r = run_python(stuck, "", Limits(wall_s=1.0))
    assert not r.ok and r.reason.startswith("timeout"), r


def test_ints_beyond_the_default_digit_limit():
    lift = getattr(sys, "set_int_max_str_digits", None)
    before = sys.get_int_max_str_digits() if lift else None
    if lift:
        lift(0)
    try:
        big = str(math.factorial(2000))
        tests = json.dumps({"tests": [{"input": "2000\n", "output": big + "\n"},
                                      {"input": big + "\n", "output": str(int(big) + 1) + "\n"}]})
    finally:
        if lift:
            lift(before)
    assert len(big) == 5736
    program = "import math\nn = int(input())\nprint(math.factorial(n) if n == 2000 else n + 1)"
    reward, d = code_execution(fenced(program), tests)
    assert reward == 1.0, d
