"""Reward hacking of the code verifier's test-code rows, without Ray: each hack ends with reward 0
and a reason naming what happened, and legitimate programs of many shapes still score 1."""


import pytest

from rlsys.config import VerifierConfig
from rlsys.verify import configure
from rlsys.verify.score_file import explain
from tests.unit.code_scoring import ScoredRows

TESTS = "assert f(2) == 4\nassert f(3) == 6"


SCORED = ScoredRows()  # the module's rows, scored once (timing-free ones 4 at a time up front)


@pytest.fixture(scope="module", autouse=True)
def short_timeout():
    configure(VerifierConfig(timeout_s=3.0, memory_mb=512, max_output_kb=256))
    rows = list(LEGIT.values()) + [(p, t) for p in LYING_VALUES.values() for t in LYING_TESTS]  # not timing-bound
    SCORED.score_ahead(rows)
    yield
    configure(VerifierConfig())


def score(program: str, tests: str = TESTS) -> tuple[float, dict]:
    return SCORED(program, tests)


WRONG = "def f(x):\n    return 0\n"

# A program that ends its process with success before (or while) the tests run.
EARLY_EXITS = {
    "sys.exit(0) at import": WRONG + "import sys\nsys.exit(0)",
    "os._exit(0) at import": WRONG + "import os\nos._exit(0)",
    "raise SystemExit at import": WRONG + "raise SystemExit",
    "exit() builtin at import": WRONG + "exit()",
    "KeyboardInterrupt at import": WRONG + "raise KeyboardInterrupt",
    "thread calls os._exit at import": WRONG + "import os, threading, time\n"
                                                "threading.Thread(target=os._exit, args=(0,)).start()\ntime.sleep(1)",
    "timer thread exits during the tests": "import os, threading, time\nthreading.Timer(0.3, os._exit, (0,)).start()\n"
                                            "def f(x):\n    time.sleep(1)\n    return 2 * x",
    "signal handler exits": "import os, signal, time\nsignal.signal(signal.SIGALRM, lambda *a: os._exit(0))\n"
                            "signal.setitimer(signal.ITIMER_REAL, 0.2)\ndef f(x):\n    time.sleep(1)\n    return 0",
    "kills itself": WRONG + "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
    "sys.exit(0) inside the function": "import sys\ndef f(x):\n    sys.exit(0)",
    "os._exit(0) inside the function": "import os\ndef f(x):\n    os._exit(0)",
    "KeyboardInterrupt inside the function": "def f(x):\n    raise KeyboardInterrupt",
    "closes the judge's pipes": WRONG + "import os\nfor fd in range(3, 64):\n    try:\n        os.close(fd)\n"
                                        "    except OSError:\n        pass",
    "parent exits, child lingers": WRONG + "import os, time\nif os.fork():\n    os._exit(0)\ntime.sleep(5)",
}

# Exit-status tricks that used to turn a failing assert into exit status 0: harmless now.
EXIT_STATUS_TRICKS = {
    "atexit handler": WRONG + "import atexit, os\natexit.register(os._exit, 0)",
    "excepthook": WRONG + "import os, sys\nsys.excepthook = lambda *a: os._exit(0)",
    "threading excepthook": WRONG + "import os, threading\nthreading.excepthook = lambda *a: os._exit(0)",
}

# Values that claim to equal the expected value.
LYING_VALUES = {
    "__eq__ always true": "class A:\n    def __eq__(self, o):\n        return True\n"
                          "    __hash__ = object.__hash__\ndef f(x):\n    return A()",
    "int subclass with lying __eq__": "class L(int):\n    def __eq__(self, o):\n        return True\n"
                                      "    __hash__ = int.__hash__\ndef f(x):\n    return L(0)",
    "str subclass": "class S(str):\n    def __eq__(self, o):\n        return True\n    __hash__ = str.__hash__\n"
                    "def f(x):\n    return S('no')",
    "list subclass": "class Q(list):\n    def __eq__(self, o):\n        return True\ndef f(x):\n    return Q()",
    "__eq__ returns a truthy object": "class T:\n    def __bool__(self):\n        return True\n"
                                      "class A:\n    def __eq__(self, o):\n        return T()\ndef f(x):\n    return A()",
    "__class__ pretends to be int": "class A:\n    __class__ = int\n    def __eq__(self, o):\n        return True\n"
                                    "def f(x):\n    return A()",
    "a generator instead of a value": "def f(x):\n    yield 2 * x",
}


@pytest.mark.parametrize("name", sorted(EARLY_EXITS))
def test_early_exit_scores_zero_with_a_reason(name):
    reward, d = score(EARLY_EXITS[name])
    assert reward == 0.0, d
    if name == "parent exits, child lingers":  # the child holds the pipes and never answers
        assert d["timeout"] and d["reason"].startswith("timeout"), d
    else:
        assert "the program" in d["reason"] and any(w in d["reason"] for w in ("exit", "ended", "raised", "gone")), d


def test_early_exit_reasons_name_what_happened():
    assert score(EARLY_EXITS["sys.exit(0) at import"])[1]["reason"] == \
        "before the tests failed: the program exited: SystemExit(0) while loading (exit status 0)"
    assert "before the tests failed: the program's process ended (exit status 0)" in \
        score(EARLY_EXITS["os._exit(0) at import"])[1]["reason"]
    assert "killed by SIGKILL (its own kill" in score(EARLY_EXITS["kills itself"])[1]["reason"]
    d = score(EARLY_EXITS["sys.exit(0) inside the function"])[1]
    assert d["reason"].startswith("test 1/2 (line 1) failed: the program exited: SystemExit(0)"), d


@pytest.mark.parametrize("name", sorted(EXIT_STATUS_TRICKS))
def test_exit_status_tricks_score_zero(name):
    reward, d = score(EXIT_STATUS_TRICKS[name])
    assert reward == 0.0 and d["reason"].startswith("test 1/2 (line 1) failed: AssertionError"), d
    assert d["tests"][0]["answers"] == ["f(2) -> 0"]


LYING_TESTS = (TESTS, "assert not (f(2) != 4)", "assert f(2) in {4, 5}", "assert [f(2)] == [4]",
               "assert isinstance(f(2), int) and f(2) == 4")


@pytest.mark.parametrize("name", sorted(LYING_VALUES))
def test_lying_values_score_zero(name):
    for tests in LYING_TESTS:
        reward, d = score(LYING_VALUES[name], tests)
        assert reward == 0.0 and "failed" in d["reason"], (tests, d)


def test_patched_builtins_and_modules_do_not_reach_the_tests():
    patches = ("import builtins, math, sys\nbuiltins.abs = lambda x: 0\nbuiltins.sorted = lambda *a, **k: [4]\n"
               "math.isclose = lambda *a, **k: True\nbuiltins.AssertionError = SystemExit\n"
               "sys.modules['math'] = type(sys)('math')\n")
    for tests in ("assert abs(f(2) - 4) < 1e-9", "import math\nassert math.isclose(f(2), 4)",
                  "assert math.isclose(f(2), 4)", "assert sorted([f(2)]) == [4]"):
        reward, d = score(patches + "def f(x):\n    return 1.5", tests)
        assert reward == 0.0 and "AssertionError" in d["reason"], (tests, d)
    # Breaking its own interpreter breaks only its own answers.
    reward, d = score("import builtins\nbuiltins.isinstance = lambda *a: True\ndef f(x):\n    return 0")
    assert reward == 0.0 and "failed" in d["reason"], d


def test_patching_the_server_in_its_own_process_only_changes_its_answers():
    # Finds the harness's globals through the stack and makes every answer claim success.
    program = ("import sys\nframe = sys._getframe()\nwhile frame and 'serve_program' not in frame.f_globals:\n"
               "    frame = frame.f_back\ng = frame.f_globals\n"
               "g['encode'] = lambda *a, **k: ['b', True]\n"
               "g['send_real'] = g['send']\n"
               "g['send'] = lambda fd, obj: g['send_real'](fd, {'ok': ['b', True]} if 'bye' not in obj else obj)\n"
               "def f(x):\n    return 0")
    reward, d = score(program)
    assert reward == 0.0 and "failed" in d["reason"], d


def test_the_tests_and_the_secret_are_out_of_the_programs_reach():
    # It looks everywhere it can read for the tests' text (its dir, other processes' cmdline,
    # environ, fds and memory, its own objects); if it found "f(2) == 4" it would pass.
    program = ("import gc, glob, os\nNEEDLE = 'f(2) ' + '=' * 2 + ' 4'\nseen = []\n"
               "for p in glob.glob('*') + glob.glob('/proc/*/cmdline') + glob.glob('/proc/*/environ')"
               " + glob.glob('/proc/*/fd/*') + glob.glob('/proc/*/mem') + glob.glob('/tmp/rlsys-sandbox-*/*'):\n"
               "    if p.startswith(('/proc/self', '/proc/thread-self', f'/proc/{os.getpid()}/')):\n"
               "        continue  # its own request pipe: reading it would steal the judge's request\n"
               "    try:\n        seen.append(open(p, 'rb').read(1 << 20).decode('latin-1'))\n"
               "    except Exception:\n        pass\n"
               "for o in gc.get_objects():\n"
               "    items = o.values() if isinstance(o, dict) else o if isinstance(o, (list, tuple)) else ()\n"
               "    seen += [v for v in items if isinstance(v, str) and v is not NEEDLE]\n"
               "LEAK = any(NEEDLE in s for s in seen)\n"
               "def f(x):\n    return 2 * x if LEAK else -1")
    reward, d = score(program)
    assert reward == 0.0 and d["tests"][0]["answers"] == ["f(2) -> -1"], d


def test_forging_the_report_or_killing_the_judge_fails():
    forge = ('import glob, os\nline = \'{"step": 1, "line": 1, "src": "x", "test": true, "ok": true, "answers": 1}\\n'
             '{"end": "x", "answers": 1, "acked": true, "gone": null}\\n\'\n'
             "for p in glob.glob('/proc/*/fd/*'):\n    try:\n        os.write(os.open(p, os.O_WRONLY), line.encode())\n"
             "    except OSError:\n        pass\n" + WRONG)
    kill = "import os, signal\nfor pid in range(1, 100):\n    try:\n        os.kill(pid, signal.SIGKILL)\n" \
           "    except OSError:\n        pass\n" + WRONG
    prewrite = "import os, struct\nmsg = b'{\"ok\": [\"i\", \"4\"]}'\nos.write(4, struct.pack('>I', len(msg)) + msg)\n" + WRONG
    for program in (forge, kill, prewrite):
        reward, d = score(program)
        assert reward == 0.0 and d["reason"], d


def test_hanging_program_times_out():
    reward, d = score("def f(x):\n    while True:\n        pass")
    assert reward == 0.0 and d["timeout"] and "0/2 tests passed; running: assert f(2) == 4" in d["reason"], d


LEGIT = {
    "plain asserts": ("def f(x):\n    return 2 * x", TESTS),
    "prints and imports at load": ("import math\nprint('loading')\ndef f(x):\n    return int(math.sqrt(x * x)) * 2",
                                   TESTS),
    "HumanEval check(candidate)": ("def add(a, b):\n    return a + b",
                                   "def check(candidate):\n    assert candidate(1, 2) == 3\n"
                                   "    assert candidate(-1, 1) == 0\n\ncheck(add)"),
    "class with methods": ("class Stack:\n    def __init__(self):\n        self.items = []\n"
                           "    def push(self, x):\n        self.items.append(x)\n"
                           "    def pop(self):\n        return self.items.pop()\n"
                           "    def __len__(self):\n        return len(self.items)",
                           "s = Stack()\ns.push(1)\ns.push(2)\nassert len(s) == 2\nassert s.pop() == 2\n"
                           "assert s.items == [1]\nassert s"),
    "LeetCode Solution class": ("class Solution:\n    def twoSum(self, nums, target):\n"
                                "        seen = {}\n        for i, n in enumerate(nums):\n"
                                "            if target - n in seen:\n                return [seen[target - n], i]\n"
                                "            seen[n] = i",
                                "assert Solution().twoSum([2, 7, 11, 15], 9) == [0, 1]"),
    "in-place change of an argument": ("def rotate(nums, k):\n    nums[:] = nums[-k:] + nums[:-k]",
                                       "nums = [1, 2, 3]\nrotate(nums, 1)\nassert nums == [3, 1, 2]"),
    "expected exception": ("def f(x):\n    if x < 0:\n        raise ValueError('negative')\n    return x",
                           "try:\n    f(-1)\n    assert False\nexcept ValueError:\n    pass\nassert f(1) == 1"),
    "floats, math without import": ("import math\ndef f(x):\n    return math.sqrt(x)",
                                    "assert abs(f(2) - 1.41421356) < 1e-6\nassert f(16) == math.sqrt(16)"),
    "pytest-style functions": ("def f(x):\n    return 2 * x",
                               "from solution import f as g\n\ndef test_a():\n    assert g(2) == 4\n\n"
                               "def test_b():\n    assert f(3) == 6"),
    "generator and iteration": ("def gen(n):\n    yield from range(n)", "assert list(gen(3)) == [0, 1, 2]\n"
                                "assert sum(gen(4)) == 6"),
    "rich values": ("from collections import Counter, namedtuple\nP = namedtuple('P', 'x y')\n"
                    "def f():\n    return {'a': [1, (2, 3)], 'b': {4}, 'c': None, 'd': b'x', 'e': 2 ** 200, 'g': 1j}\n"
                    "def g():\n    return Counter('aab')\ndef h():\n    return P(1, 2)\nLIMIT = 10",
                    "assert f() == {'a': [1, (2, 3)], 'b': {4}, 'c': None, 'd': b'x', 'e': 2 ** 200, 'g': 1j}\n"
                    "assert g() == {'a': 2, 'b': 1}\nassert h() == (1, 2)\nassert LIMIT == 10\n"
                    "assert f()['c'] is None and f()['e'] > 2 ** 199"),
    "threads inside the function": ("from concurrent.futures import ThreadPoolExecutor\ndef f(x):\n"
                                    "    with ThreadPoolExecutor(2) as ex:\n        return sum(ex.map(lambda v: v, [x, x]))",
                                    TESTS),
    "numpy-style scalar": ("class Int64:  # stands in for numpy.int64 (no numpy in the sandbox's Python here)\n"
                           "    shape = ()\n    def __init__(self, v):\n        self.v = v\n"
                           "    def item(self):\n        return self.v\nInt64.__module__ = 'numpy'\n"
                           "def f(x):\n    return Int64(2 * x)", TESTS),
    "loop over cases": ("def f(x):\n    return 2 * x", "for x, y in [(1, 2), (5, 10)]:\n    assert f(x) == y"),
}


@pytest.mark.parametrize("name", sorted(LEGIT))
def test_legitimate_programs_pass_with_evidence(name):
    program, tests = LEGIT[name]
    reward, d = score(program, tests)
    assert reward == 1.0, d
    assert d["passed"] == d["total"] >= 1 and d["reason"] == f"passed {d['total']}/{d['total']} tests"
    assert all(t["result"] == "passed" for t in d["tests"]) and len(d["tests"]) == d["total"]
    assert "never runs the program" in d["evidence"] and "secret" in d["evidence"]


def test_tests_that_never_call_the_program_do_not_pass():
    reward, d = score("def f(x):\n    return 2 * x", "assert 1 + 1 == 2")
    assert reward == 0.0 and "never used the program" in d["reason"]


def test_missing_function_and_import_error_name_the_problem():
    assert "NameError: name 'f' is not defined" in score("def g(x):\n    return x")[1]["reason"]
    reward, d = score("import numpy_does_not_exist\ndef f(x):\n    return 2 * x")
    assert reward == 0.0 and "ModuleNotFoundError raised while loading" in d["reason"], d


def test_explain_shows_each_test_and_the_evidence():
    reward, d = score("def f(x):\n    return 2 * x")
    text = "\n".join(explain({"line": 3, "id": "r", "data_source": "code", "reward": reward, **d}))
    assert text.startswith("line 3 (r) [code] reward 1: passed 2/2 tests")
    assert "line 1: assert f(2) == 4  -> passed, 1 program answer(s)" in text
    assert "evidence: all 2 tests ran to their end in the judge" in text
    reward, d = score(LYING_VALUES["__eq__ always true"])
    text = "\n".join(explain({"line": 4, "id": None, "data_source": "code", "reward": reward, **d}))
    assert "reward 0: test 1/2 (line 1) failed: AssertionError" in text and "f(2) -> <A object of the program>" in text
    reward, d = score("print(sum(map(int, input().split())))", '{"tests": [{"input": "1 2", "output": "3"}]}')
    assert "case 1  -> passed" in "\n".join(explain({"line": 1, "data_source": "code", "reward": reward, **d}))
