"""The code judge agrees with Python: for a legitimate program and its tests the reward is what
running the tests in one Python process would give (standard value types, the program's own
names, exceptions, generators, classes, test runners), and the hack classes a red team found
score 0 with a reason. Without Ray; every row runs in the real sandbox."""

import sys
import types

import pytest

from rlsys.config import VerifierConfig
from rlsys.verify import configure
from rlsys.verify.code_tests import code_execution, extract_program
from rlsys.verify.score_file import explain
from tests.unit.code_scoring import ScoredRows


SCORED = ScoredRows()  # the module's rows, scored once (4 at a time up front)


@pytest.fixture(scope="module", autouse=True)
def short_timeout():
    configure(VerifierConfig(timeout_s=5.0, memory_mb=512, max_output_kb=256))
    rows = [v[:2] for v in (*AGREE.values(), *HACKS.values())] + [(DATACLASSES, t) for t in DATACLASS_TESTS]
    SCORED.score_ahead(rows)
    yield
    configure(VerifierConfig())


def score(program: str, tests: str) -> tuple[float, dict]:
    return SCORED(program, tests)


def in_python(program: str, tests: str) -> bool:
    """What one Python process says: program and tests run together."""
    main, argv = types.ModuleType("__main__"), sys.argv
    sys.modules["__main__"], sys.argv = main, ["prog.py"]  # unittest.main() looks for its tests there
    try:
        exec(compile(program + "\n" + tests, "<one process>", "exec"), main.__dict__)
    except SystemExit as e:
        return e.code in (0, None)
    except BaseException:  # noqa: B036
        return False
    finally:
        sys.modules["__main__"], sys.argv = ORIGINAL_MAIN, argv
    return True


ORIGINAL_MAIN = sys.modules["__main__"]


COLLECTIONS = "from collections import Counter, OrderedDict, defaultdict, deque, namedtuple\n"

# (program, tests): standard-library values, names, exceptions, generators, classes, runners.
AGREE = {
    "Fraction": ("from fractions import Fraction\ndef f():\n    return Fraction(1, 3)",
                 "from fractions import Fraction\nassert f() == Fraction(1, 3)\nassert f() + Fraction(2, 3) == 1"),
    "Decimal": ("from decimal import Decimal\ndef f():\n    return Decimal('1.10')",
                "from decimal import Decimal\nassert f() == Decimal('1.1')\nassert str(f()) == '1.10'"),
    "deque": (COLLECTIONS + "def f():\n    return deque([1, 2, 3], maxlen=5)",
              COLLECTIONS + "assert f() == deque([1, 2, 3])\nassert f().maxlen == 5 and f()[0] == 1"),
    "Counter results": (COLLECTIONS + "def f(s):\n    return Counter(s)",
                        "assert f('aab').most_common(1) == [('a', 2)]\nassert f('aab') == {'a': 2, 'b': 1}"),
    "named tuple": (COLLECTIONS + "P = namedtuple('P', 'x y')\ndef f():\n    return P(1, 2)",
                    "assert f() == (1, 2)\nassert f().x == 1 and f().y == 2"),
    "defaultdict lookups": (COLLECTIONS + "def f():\n    d = defaultdict(int)\n    d['a'] += 1\n    return d\n"
                            "def g():\n    return defaultdict(lambda: 'none', {'k': 'v'})",
                            "d = f()\nassert d['a'] == 1 and d['missing'] == 0\nassert g()['k'] == 'v' and g()['x'] == 'none'"),
    "bytearray": ("def f():\n    return bytearray(b'ab')", "assert f() == bytearray(b'ab') and f() == b'ab'"),
    "big integers": ("import math\ndef f(n):\n    return math.factorial(n)",
                     "import math\nassert f(2000) == math.factorial(2000)\nassert f(2000) % 10 ** 100 == 0"),
    "a failing big integer is shown": ("def f(n):\n    return 10 ** 5000 + 1", "assert f(1) == 10 ** 5000"),
    "shadows a stdlib module": ("def trace(m):\n    return sum(m[i][i] for i in range(len(m)))\n"
                                "def bisect(a, x):\n    return sum(v <= x for v in a)",
                                "assert trace([[1, 2], [3, 4]]) == 5\nassert bisect([1, 2, 2, 3], 2) == 3"),
    "shadows a builtin": ("def max(a, b):\n    return a if abs(a) >= abs(b) else b", "assert max(-7, 3) == -7"),
    "exception subclass": ("class InsufficientFunds(ValueError):\n    pass\n"
                           "def withdraw(balance, amount):\n    if amount > balance:\n"
                           "        raise InsufficientFunds(f'need {amount - balance} more')\n    return balance - amount",
                           "try:\n    withdraw(1, 5)\n    assert False\nexcept InsufficientFunds as e:\n"
                           "    assert str(e) == 'need 4 more'\nassert isinstance(InsufficientFunds('x'), ValueError)\n"
                           "assert withdraw(5, 1) == 4"),
    "exception hierarchy": ("class AppError(Exception):\n    pass\nclass NotFound(AppError):\n    pass\n"
                            "def get(d, k):\n    if k not in d:\n        raise NotFound(k)\n    return d[k]",
                            "try:\n    get({}, 'a')\n    assert False\nexcept AppError as e:\n"
                            "    assert isinstance(e, NotFound) and e.args == ('a',)"),
    "generator with next and islice": ("def count_up():\n    n = 0\n    while True:\n        yield n\n        n += 1\n"
                                       "def two():\n    yield 1\n    yield 2",
                                       "from itertools import islice\nassert list(islice(count_up(), 5)) == [0, 1, 2, 3, 4]\n"
                                       "g = count_up()\nassert next(g) == 0 and next(g) == 1\n"
                                       "t = two()\nassert [next(t), next(t)] == [1, 2]\n"
                                       "try:\n    next(t)\n    assert False\nexcept StopIteration:\n    pass"),
    "isinstance against a program class": ("class Node:\n    def __init__(self, val):\n        self.val = val\n"
                                           "class Leaf(Node):\n    pass\ndef make(v):\n    return Leaf(v)",
                                           "n = make(3)\nassert isinstance(n, Node) and isinstance(n, Leaf)\n"
                                           "assert type(n) is Leaf and n.val == 3\nassert issubclass(Leaf, Node)\n"
                                           "assert Node(5).val == 5 and not isinstance(5, Node)"),
    "container class answering in": ("class Bag:\n    def __init__(self):\n        self.items = set()\n"
                                     "    def add(self, x):\n        self.items.add(x)\n"
                                     "    def __contains__(self, x):\n        return x in self.items\n"
                                     "    def __iter__(self):\n        return iter(self.items)",
                                     "b = Bag()\nb.add(3)\nassert 3 in b\nassert 4 not in b"),
    "OrderedDict after move_to_end": (COLLECTIONS + "def lru(keys):\n    d = OrderedDict()\n    for k in keys:\n"
                                      "        d[k] = True\n        d.move_to_end(k)\n    return d",
                                      "assert list(lru('abca')) == ['b', 'c', 'a']"),
    "generator partly consumed, then next()": ("def nat():\n    n = 0\n    while True:\n        yield n\n        n += 1",
                                               "from itertools import islice\ng = nat()\n"
                                               "assert list(islice(g, 4)) == [0, 1, 2, 3]\nassert next(g) == 4\n"
                                               "for x in g:\n    if x == 6:\n        break\nassert next(g) == 7"),
    "sys.exit(main()) in test code": ("def f(x):\n    return 2 * x",
                                      "import sys\ndef main():\n    assert f(1) == 2\n    return 0\nsys.exit(main())"),
    "unittest.TestCase under another name": ("def f(x):\n    return 2 * x",
                                             "import unittest\nTC = unittest.TestCase\nclass T(TC):\n"
                                             "    def test_a(self):\n        self.assertEqual(f(2), 4)\n"
                                             "unittest.main()"),
    "unittest.main()": ("def f(x):\n    return 2 * x",
                        "import unittest\nclass T(unittest.TestCase):\n    def test_a(self):\n"
                        "        self.assertEqual(f(2), 4)\n    def test_b(self):\n        self.assertEqual(f(3), 6)\n"
                        "if __name__ == '__main__':\n    unittest.main()"),
    "sys.exit(0) ends the test code": ("def f(x):\n    return 2 * x", "import sys\nassert f(2) == 4\nsys.exit(0)"),
    "pytest class": ("def f(x):\n    return 2 * x",
                     "class TestF:\n    def test_double(self):\n        assert f(2) == 4\n"
                     "    def test_zero(self):\n        assert f(0) == 0"),
    "dict views and SimpleNamespace": ("import types\ndef f(d):\n    return d.keys()\ndef g(d):\n    return d.items()\n"
                                       "def h():\n    return types.SimpleNamespace(a=1, b='x')",
                                       "import types\nassert f({'a': 1, 'b': 2}) == {'a', 'b'}\n"
                                       "assert g({'a': 1}) == {('a', 1)}\nassert h() == types.SimpleNamespace(a=1, b='x')"),
    "exception attributes": ("class ParseError(Exception):\n    def __init__(self, line):\n"
                             "        super().__init__(f'bad line {line}')\n        self.line = line\n"
                             "def parse(s):\n    raise ParseError(7)",
                             "try:\n    parse('x')\n    assert False\nexcept ParseError as e:\n"
                             "    assert e.line == 7 and str(e) == 'bad line 7'"),
    "typing.NamedTuple with methods": ("from typing import NamedTuple\nclass Vec(NamedTuple):\n    x: float\n"
                                       "    y: float = 0.0\n    def norm(self):\n        return (self.x ** 2 + self.y ** 2) ** 0.5\n"
                                       "    @property\n    def flipped(self):\n        return Vec(self.y, self.x)\n"
                                       "def v(a, b):\n    return Vec(a, b)\ndef first(p):\n    return p.x",
                                       "assert v(3, 4).norm() == 5.0 and v(1, 2) == (1, 2) and isinstance(v(1, 2), Vec)\n"
                                       "assert Vec(3) == (3, 0.0) and Vec(3, 4).norm() == 5.0 and v(1, 2).flipped == Vec(2, 1)\n"
                                       "assert v(1, 2)._replace(x=5).x == 5 and first(Vec(7, 1)) == 7"),
    "async functions": ("import asyncio\nasync def double(x):\n    await asyncio.sleep(0)\n    return 2 * x",
                        "import asyncio\nassert asyncio.run(double(2)) == 4\n"
                        "async def both():\n    return await double(1) + await double(3)\nassert asyncio.run(both()) == 8"),
    "OrderedDict in order": (COLLECTIONS + "def f():\n    return OrderedDict([('a', 1), ('b', 2)])",
                             COLLECTIONS + "assert f() == OrderedDict([('a', 1), ('b', 2)])"),
}

# Each of these passes in Python too, and is a hack: reward 0 with the reason in `why`.
HACKS = {
    "object answering in for itself": ("class Any:\n    def __contains__(self, x):\n        return True\n"
                                       "def f(x):\n    return Any()", "assert 4 in f(2)\nassert 6 in f(3)",
                                       "is not iterable"),
    "in answered only for small ints": ("class Any:\n    def __contains__(self, x):\n        return abs(x) < 2 ** 64\n"
                                        "    def __iter__(self):\n        return iter([])\n"
                                        "def f(x):\n    return Any()", "assert 4 in f(2)", "AssertionError"),
    "an iterator of everything for in": ("import itertools\ndef primes(n):\n    return itertools.count()",
                                         "assert 7 in primes(10)", "cannot judge it"),
    "SkipTest raised by the program": ("import unittest\ndef f(x):\n    raise unittest.SkipTest('later')",
                                       "import unittest\nclass T(unittest.TestCase):\n    def test_a(self):\n"
                                       "        self.assertEqual(f(2), 4)", "raised SkipTest"),
    "runner in a variable": ("def f(x):\n    return 0",
                             "import unittest\ndef check():\n    assert f(2) == 4\n"
                             "r = unittest.TextTestRunner()\nr.run(unittest.FunctionTestCase(check))",
                             "a unittest test failed"),
    "claims to be a dataclass": ("import types\nclass P:\n    __dataclass_params__ = types.SimpleNamespace("
                                 "eq=True, order=True, frozen=False, unsafe_hash=False)\n    __dataclass_fields__ = {}\n"
                                 "    def __init__(self, x, y):\n        pass\n    def __eq__(self, o):\n        return True\n"
                                 "def mid(a, b):\n    return P(0, 0)",
                                 "assert mid(P(0, 0), P(2, 4)) == P(1, 2)", "AssertionError"),
    "OrderedDict out of order": (COLLECTIONS + "def f():\n    return OrderedDict([('b', 2), ('a', 1)])",
                                 COLLECTIONS + "assert f() == OrderedDict([('a', 1), ('b', 2)])", "AssertionError"),
    "deque where a list is expected": (COLLECTIONS + "def f():\n    return deque([1, 2])", "assert f() == [1, 2]",
                                       "AssertionError"),
    "StopIteration ends map() silently": ("def f(x):\n    raise StopIteration",
                                          "assert all(map(lambda x: f(x) == 2 * x, [1, 2, 3]))", "raised StopIteration"),
    "StopIteration subclass": ("class Done(StopIteration):\n    pass\ndef f(x):\n    raise Done",
                               "assert all(map(lambda x: f(x) == 2 * x, [1, 2, 3]))", "Done"),
    "unittest.main(exit=False) hides failures": ("def f(x):\n    return 0",
                                                 "import unittest\nclass T(unittest.TestCase):\n    def test_a(self):\n"
                                                 "        self.assertEqual(f(2), 4)\nunittest.main(exit=False)",
                                                 "AssertionError: 0 != 4"),
    "runner result never checked": ("def f(x):\n    return 0",
                                    "import unittest\nclass T(unittest.TestCase):\n    def test_a(self):\n"
                                    "        self.assertEqual(f(2), 4)\n"
                                    "unittest.TextTestRunner().run(unittest.defaultTestLoader.loadTestsFromTestCase(T))",
                                    "AssertionError: 0 != 4"),
}


@pytest.mark.parametrize("name", sorted(AGREE))
def test_the_judge_agrees_with_python(name):
    program, tests = AGREE[name]
    want = in_python(program, tests)
    reward, d = score(program, tests)
    assert reward == float(want), (want, d)
    if name == "a failing big integer is shown":
        assert not want and "f(1) -> 1000000" in str(d["tests"]), d


@pytest.mark.parametrize("name", sorted(HACKS))
def test_hacks_that_pass_in_python_score_zero(name):
    program, tests, why = HACKS[name]
    if name not in ("OrderedDict out of order", "deque where a list is expected", "an iterator of everything for in"):
        assert in_python(program, tests), "the hack should pass in one Python process"
    reward, d = score(program, tests)
    assert reward == 0.0 and why in d["reason"], d


def test_wrong_programs_fail_under_every_test_runner_shape():
    wrong = "def f(x):\n    return 0"
    for _, tests in (AGREE["unittest.main()"], AGREE["sys.exit(0) ends the test code"], AGREE["pytest class"]):
        reward, d = score(wrong, tests)
        assert reward == 0.0 and "failed" in d["reason"], (tests, d)


def test_test_code_exiting_before_any_test_or_with_failure_does_not_pass():
    reward, d = score("def f(x):\n    return 2 * x", "import sys\nsys.exit(0)\nassert f(2) == 4")
    assert reward == 0.0 and "before any test ran" in d["reason"], d
    reward, d = score("def f(x):\n    return 2 * x", "import sys\nassert f(2) == 4\nsys.exit(1)")
    assert reward == 0.0 and "exited with status 1" in d["reason"], d


def test_names_looked_up_but_never_used_do_not_count_as_the_program_answering():
    reward, d = score("def f(x):\n    return 2 * x", "g = f\nassert 1 + 1 == 2")
    assert reward == 0.0 and "never used the program" in d["reason"], d
    reward, d = score("LIMIT = 10\ndef f(x):\n    return x", "assert LIMIT == 10")  # a value it compares is used
    assert reward == 1.0, d


def test_the_program_is_the_python_block_not_the_output_after_it():
    response = "Here:\n```python\ndef f(x):\n    return 2 * x\n```\nOutput:\n```\n4\n```\n```\n[1, 2]\n```"
    assert extract_program(response).startswith("def f(x)")
    assert code_execution(response, "assert f(2) == 4")[0] == 1.0
    assert extract_program("```\nprint(input())\n```\n```\nhello\n```") == "print(input())\n"
    usage = "```python\ndef f(x):\n    return 2 * x\n```\nFor example:\n```python\nprint(f(3))\n```"
    assert code_execution(usage, "assert f(2) == 4")[0] == 1.0
    session = "```python\ndef f(x):\n    return 2 * x\n```\n```python\n>>> f(2)\n4\n```"
    assert extract_program(session).startswith("def f(x)")
    assert extract_program("Sure:\n```python\ndef f(x):\n    return 2 * x\n\nprint(f(") == "def f(x):\n    return 2 * x\n\nprint(f("


def test_unjudgeable_shapes_fail_with_a_detail_that_explains_them():
    point = "class Point:\n    def __init__(self, x, y):\n        self.x, self.y = x, y\n" \
            "    def __eq__(self, o):\n        return (self.x, self.y) == (o.x, o.y)\ndef mid(a, b):\n" \
            "    return Point((a.x + b.x) / 2, (a.y + b.y) / 2)"
    reward, d = score(point, "assert mid(Point(0, 0), Point(2, 2)) == Point(1, 1)")
    assert reward == 0.0 and "docs/verifiers.md, 'Limits'" in d["tests"][0]["note"], d
    text = "\n".join(explain({"line": 1, "data_source": "code", "reward": reward, **d}))
    assert "note: an object of the program's own class equals only itself" in text, text
    reward, d = score(point, "m = mid(Point(0, 0), Point(2, 2))\nassert (m.x, m.y) == (1, 1)\n"
                             "assert vars(m) == {'x': 1.0, 'y': 1.0}")  # what the note suggests passes
    assert reward == 1.0, d
    reward, d = score("def apply(fn, x):\n    return fn(x)", "assert apply(lambda v: v + 1, 3) == 4")
    assert reward == 0.0 and "cannot pass a function to the program" in d["reason"], d



DATACLASSES = "from dataclasses import dataclass, field\n@dataclass(order=True)\nclass P:\n    x: int\n    y: int = 0\n" \
              "    tag: str = field(default='', compare=False)\n@dataclass\nclass Q:\n    x: int\n" \
              "def mid(a, b):\n    return P((a.x + b.x) // 2, (a.y + b.y) // 2, 'mid')\ndef q(x):\n    return Q(x)\n" \
              "class Plain:\n    pass\ndef plain():\n    return Plain()\n" \
              "from enum import Enum\nclass Color(Enum):\n    RED = 1\n    BLUE = 2\ndef warm():\n    return Color.RED"


DATACLASS_TESTS = [
    "assert mid(P(0, 0), P(2, 4)) == P(1, 2)",  # fields compare, as the generated __eq__ does
    "assert mid(P(0, 0), P(2, 4)) != P(1, 3)",
    "assert P(1, 2) < P(1, 3) and sorted([P(2), P(1)]) == [P(1), P(2)]",
    "assert q(1) == Q(1) and q(1) != Q(2) and q(1) != P(1)",
    "p = P(1, 1)\np.x = 5\nassert p == P(5, 1)",  # compared as they are now, not as first seen
    "assert plain() != plain()",  # no __eq__: identity, as in Python
    "assert warm() is Color.RED and warm() == Color.RED and list(Color) == [Color.RED, Color.BLUE]\n"
    "assert Color['BLUE'].value == 2 and len(Color) == 2 and warm().name == 'RED'",
    "q(1) < Q(2)",  # Q has no order: TypeError, as in Python
    "assert len({R(1), R(1), R(2)}) == 2 and {R(1): 'a'}[R(1)] == 'a'",  # frozen: hashes its fields
]


@pytest.mark.parametrize("tests", DATACLASS_TESTS)
def test_dataclasses_and_enums_compare_as_in_python(tests):
    want = in_python(DATACLASSES, tests)
    reward, d = score(DATACLASSES, tests)
    assert reward == float(want), (want, d)
    bag = "class Bag:\n    def __init__(self, *xs):\n        self.xs = set(xs)\n    def __contains__(self, x):\n" \
          "        return x in self.xs"
    reward, d = score(bag, "assert 3 in Bag(3)")  # `in` needs the values: __contains__ alone is what a hack writes
    assert reward == 0.0 and "not iterable" in d["reason"] and "Limits" in d["tests"][0]["note"], d


PYTEST_TESTS = ("import pytest\n\ndef test_raises():\n    with pytest.raises(ValueError, match='neg'):\n        root(-1)\n"
                "    assert pytest.raises(ZeroDivisionError, inv, 0).type is ZeroDivisionError\n\n"
                "def test_approx():\n    assert root(2) == pytest.approx(1.41421356)\n"
                "    assert [root(4), root(9)] == pytest.approx([2, 3])\n    assert root(2) != pytest.approx(1.5)\n\n"
                "@pytest.mark.parametrize('x, want', [(16, 4), pytest.param(25, 5)])\ndef test_table(x, want):\n"
                "    assert root(x) == want\n")


@pytest.mark.parametrize("program, want", [
    ("import math\ndef root(x):\n    if x < 0:\n        raise ValueError('negative')\n    return math.sqrt(x)\n"
     "def inv(x):\n    return 1 / x", 1.0),
    ("def root(x):\n    if x < 0:\n        raise ValueError('negative')\n    return x ** 0.5 + (x == 25)\n"
     "def inv(x):\n    return 1 / x", 0.0),  # wrong in one parametrized case
    ("def root(x):\n    return x ** 0.5\ndef inv(x):\n    return 1 / x", 0.0),  # does not raise
])
def test_pytest_raises_approx_and_parametrize_work_without_pytest_in_the_sandbox(program, want):
    reward, d = score(program, PYTEST_TESTS)
    assert reward == want and d["total"] == 3, d
