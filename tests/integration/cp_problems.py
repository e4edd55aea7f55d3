"""Competitive-programming style stdin/stdout problems for the `code` verifier's acceptance tests
(tests/integration/test_code_benchmarks.py).

Each problem has inputs generated here with a fixed seed (small hand-written cases, then large
ones), a trusted reference implementation that computes the expected outputs in the test process,
reference solutions written in the I/O and recursion idioms contestants use (they must score 1),
and one deliberately wrong solution (it must score 0, for the reason given in `wrong_reason`).
The expected outputs never go into a program: the verifier keeps them outside the sandbox.
"""

from __future__ import annotations

import functools
import json
import random
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

SEED = 20260229


@dataclass
class Problem:
    pid: str
    statement: str
    inputs: list[str]
    reference: Callable[[str], str]  # the trusted solution, run in the test process
    solutions: dict[str, str]  # idiom -> program; each must score 1
    wrong: str  # a wrong program; it must score 0
    wrong_reason: str  # a regex the verifier's reason for `wrong` must match
    brute: Callable[[str], str] | None = None  # an obviously correct slow solution, for small inputs
    small_inputs: list[str] = field(default_factory=list)  # random small inputs: reference == brute

    def cases(self) -> list[dict]:
        return [{"input": i, "output": self.reference(i)} for i in self.inputs]

    def ground_truth(self) -> str:
        return json.dumps({"tests": self.cases()})


def _program(text: str) -> str:
    return text.strip("\n") + "\n"


# ---------------------------------------------------------------------------------------------
# bigsum: T test cases, each two non-negative integers of up to 40 000 digits (Python's default
# int <-> str limit is 4 300 digits: a judge must lift it, as Codeforces and AtCoder do).


def _add_decimal(a: str, b: str) -> str:
    """Schoolbook addition of two non-negative decimal strings (no int(): independent of the limit)."""
    a, b = a.lstrip("0") or "0", b.lstrip("0") or "0"
    n = max(len(a), len(b))
    a, b = a.rjust(n, "0"), b.rjust(n, "0")
    out, carry = [], 0
    for x, y in zip(reversed(a), reversed(b)):
        s = ord(x) + ord(y) - 96 + carry
        out.append(chr(48 + s % 10))
        carry = s // 10
    if carry:
        out.append("1")
    return "".join(reversed(out)).lstrip("0") or "0"


def bigsum_reference(text: str) -> str:
    lines = text.split("\n")
    t = int(lines[0])
    return "".join(_add_decimal(*lines[1 + k].split()) + "\n" for k in range(t))


def bigsum_brute(text: str) -> str:
    lines = text.split("\n")
    return "".join(f"{int(a) + int(b)}\n" for a, b in (line.split() for line in lines[1:1 + int(lines[0])]))


def _digits(rng: random.Random, n: int) -> str:
    return str(rng.randint(1, 9)) + "".join(rng.choice("0123456789") for _ in range(n - 1))


def _bigsum_inputs(rng: random.Random) -> list[str]:
    small = "4\n1 2\n999 1\n0 0\n123456789012345678901234567890 987654321098765432109876543210\n"
    carry = f"2\n{'9' * 20000} 1\n1 {'9' * 9000}\n"  # a carry through every digit, lengths that differ
    big = [(_digits(rng, rng.randint(5000, 40000)), _digits(rng, rng.randint(5000, 40000))) for _ in range(5)]
    return [small, carry, f"{len(big)}\n" + "".join(f"{a} {b}\n" for a, b in big)]


BIGSUM = dict(
    statement="T, then T lines 'a b' (non-negative, up to 40 000 digits): print a + b for each.",
    solutions={
        "input() and print": """
t = int(input())
for _ in range(t):
    a, b = input().split()
    print(int(a) + int(b))
""",
        "lifts the limit itself, sys.stdin.readline, sys.stdout.write": """
import sys
sys.set_int_max_str_digits(0)
input = sys.stdin.readline
t = int(input())
out = []
for _ in range(t):
    a, b = map(int, input().split())
    out.append(str(a + b))
sys.stdout.write("\\n".join(out) + "\\n")
""",
        "sys.stdin.buffer.read().split(), print(*res, sep)": """
import sys
data = sys.stdin.buffer.read().split()
t = int(data[0])
res = [int(data[1 + 2 * k]) + int(data[2 + 2 * k]) for k in range(t)]
print(*res, sep="\\n")
""",
    },
    wrong="""
t = int(input())
for _ in range(t):
    a, b = input().split()
    print(int(a[-18:]) + int(b[-18:]))  # 64-bit thinking: keeps only the low digits
""",
    wrong_reason=r"^test 1/3: wrong output$",
)


# ---------------------------------------------------------------------------------------------
# maxsub: T test cases of an array; the maximum sum of a non-empty contiguous subarray (Kadane).


def maxsub_reference(text: str) -> str:
    it = iter(text.split())
    out = []
    for _ in range(int(next(it))):
        n = int(next(it))
        best, cur = None, 0
        for _ in range(n):
            x = int(next(it))
            cur = x if best is None else max(x, cur + x)
            best = cur if best is None else max(best, cur)
        out.append(f"{best}\n")
    return "".join(out)


def maxsub_brute(text: str) -> str:
    it = iter(text.split())
    out = []
    for _ in range(int(next(it))):
        a = [int(next(it)) for _ in range(int(next(it)))]
        out.append(f"{max(sum(a[i:j]) for i in range(len(a)) for j in range(i + 1, len(a) + 1))}\n")
    return "".join(out)


def _arrays(arrays: list[list[int]]) -> str:
    return f"{len(arrays)}\n" + "".join(f"{len(a)}\n{' '.join(map(str, a))}\n" for a in arrays)


def _maxsub_inputs(rng: random.Random) -> list[str]:
    small = _arrays([[1, -2, 3, 4, -1], [-5], [-3, -1, -2], [0, 0], [5, -10, 5]])
    many = _arrays([[rng.randint(-10**9, 10**9) for _ in range(rng.randint(1, 20))] for _ in range(10000)])
    negative = _arrays([[rng.randint(-10**9, -1) for _ in range(50000)]])
    long = _arrays([[rng.randint(-10**9, 10**9) for _ in range(200000)]])
    return [small, many, negative, long]


MAXSUB = dict(
    statement="T test cases: n, then n integers (|a_i| <= 1e9); print the largest sum of a non-empty contiguous subarray.",
    solutions={
        "sys.stdin.readline": """
import sys
input = sys.stdin.readline

def solve():
    n = int(input())
    a = list(map(int, input().split()))
    best = cur = a[0]
    for x in a[1:]:
        cur = max(x, cur + x)
        best = max(best, cur)
    return best

for _ in range(int(input())):
    print(solve())
""",
        "open(0).read().split(), print(*out, sep, end)": """
data = iter(open(0).read().split())
out = []
for _ in range(int(next(data))):
    n = int(next(data))
    best, cur = -float("inf"), 0
    for _ in range(n):
        x = int(next(data))
        cur = max(x, cur + x)
        best = max(best, cur)
    out.append(best)
print(*out, sep="\\n", end="\\n")
""",
        "PyRival fast input: os.read(0, os.fstat(0).st_size)": """
import io, os, sys
input = io.BytesIO(os.read(0, os.fstat(0).st_size)).readline
t = int(input())
res = []
for _ in range(t):
    n = int(input())
    a = list(map(int, input().split()))
    best = cur = a[0]
    for x in a[1:]:
        cur = cur + x if cur > 0 else x
        if cur > best:
            best = cur
    res.append(best)
sys.stdout.write("\\n".join(map(str, res)) + "\\n")
""",
    },
    wrong="""
import sys
input = sys.stdin.readline
for _ in range(int(input())):
    n = int(input())
    best = cur = 0  # forgets arrays of negative numbers only: prints 0
    for x in map(int, input().split()):
        cur = max(0, cur + x)
        best = max(best, cur)
    print(best)
""",
    wrong_reason=r"^test 1/4: wrong output$",
)


# ---------------------------------------------------------------------------------------------
# bfs: an undirected graph; the distance (in edges) from vertex 1 to every vertex, -1 if unreachable.


def bfs_reference(text: str) -> str:
    data = text.split()
    n, m = int(data[0]), int(data[1])
    adj = [[] for _ in range(n + 1)]
    for k in range(m):
        u, v = int(data[2 + 2 * k]), int(data[3 + 2 * k])
        adj[u].append(v)
        adj[v].append(u)
    dist = [-1] * (n + 1)
    dist[1] = 0
    queue = deque([1])
    while queue:
        u = queue.popleft()
        for v in adj[u]:
            if dist[v] < 0:
                dist[v] = dist[u] + 1
                queue.append(v)
    return " ".join(map(str, dist[1:])) + "\n"


def bfs_brute(text: str) -> str:
    """Bellman-Ford style relaxation until nothing changes."""
    data = list(map(int, text.split()))
    n, m = data[0], data[1]
    edges = [(data[2 + 2 * k], data[3 + 2 * k]) for k in range(m)]
    inf = float("inf")
    dist = [inf] * (n + 1)
    dist[1] = 0
    changed = True
    while changed:
        changed = False
        for u, v in edges:
            for a, b in ((u, v), (v, u)):
                if dist[a] + 1 < dist[b]:
                    dist[b], changed = dist[a] + 1, True
    return " ".join(str(d) if d < inf else "-1" for d in dist[1:]) + "\n"


def _graph(n: int, edges: list[tuple[int, int]]) -> str:
    return f"{n} {len(edges)}\n" + "".join(f"{u} {v}\n" for u, v in edges)


def _random_graph(rng: random.Random, n: int, m: int) -> str:
    return _graph(n, [(rng.randint(1, n), rng.randint(1, n)) for _ in range(m)])


def _bfs_inputs(rng: random.Random) -> list[str]:
    small = _graph(6, [(1, 2), (2, 3), (1, 3), (3, 4), (5, 6)])  # a triangle, a tail, another component
    lone = _graph(1, [])
    random_big = _random_graph(rng, 100000, 150000)
    labels = list(range(2, 60001))
    rng.shuffle(labels)
    path = [1] + labels  # a path of 60 000 vertices in shuffled order: distances up to 59 999
    chords = [(path[i], path[i + 2]) for i in range(0, len(path) - 2, 97)]  # shortcuts a DFS may miss
    edges = [(path[i], path[i + 1]) for i in range(len(path) - 1)] + chords
    rng.shuffle(edges)
    return [small, lone, random_big, _graph(len(path), edges)]


BFS = dict(
    statement="n m, then m undirected edges u v (1-based; loops and repeats allowed): print the distance "
              "from vertex 1 to vertices 1..n, -1 if unreachable, space-separated.",
    solutions={
        "sys.stdin.buffer.read().split(), deque, sys.stdout.write": """
import sys
from collections import deque

def main():
    data = sys.stdin.buffer.read().split()
    n, m = int(data[0]), int(data[1])
    adj = [[] for _ in range(n + 1)]
    for k in range(m):
        u, v = int(data[2 + 2 * k]), int(data[3 + 2 * k])
        adj[u].append(v)
        adj[v].append(u)
    dist = [-1] * (n + 1)
    dist[1] = 0
    q = deque([1])
    while q:
        u = q.popleft()
        for v in adj[u]:
            if dist[v] == -1:
                dist[v] = dist[u] + 1
                q.append(v)
    sys.stdout.write(" ".join(map(str, dist[1:])) + "\\n")

main()
""",
        "sys.stdin.readline, list as a queue, print(*dist)": """
import sys
input = sys.stdin.readline
n, m = map(int, input().split())
g = [[] for _ in range(n + 1)]
for _ in range(m):
    u, v = map(int, input().split())
    g[u].append(v)
    g[v].append(u)
dist = [-1] * (n + 1)
dist[1] = 0
order = [1]
head = 0
while head < len(order):
    u = order[head]
    head += 1
    for v in g[u]:
        if dist[v] < 0:
            dist[v] = dist[u] + 1
            order.append(v)
print(*dist[1:])
""",
        "input(), print(x, end=' ') per vertex": """
from collections import deque
n, m = map(int, input().split())
g = [[] for _ in range(n + 1)]
for _ in range(m):
    u, v = map(int, input().split())
    g[u].append(v)
    g[v].append(u)
dist = [-1] * (n + 1)
dist[1] = 0
q = deque([1])
while q:
    u = q.popleft()
    for v in g[u]:
        if dist[v] == -1:
            dist[v] = dist[u] + 1
            q.append(v)
for d in dist[1:]:
    print(d, end=" ")
print()
""",
    },
    wrong="""
import sys
data = sys.stdin.buffer.read().split()
n, m = int(data[0]), int(data[1])
g = [[] for _ in range(n + 1)]
for k in range(m):
    u, v = int(data[2 + 2 * k]), int(data[3 + 2 * k])
    g[u].append(v)
    g[v].append(u)
dist = [-1] * (n + 1)
dist[1] = 0
stack = [1]
while stack:  # depth-first: the first path found is not the shortest
    u = stack.pop()
    for v in g[u]:
        if dist[v] == -1:
            dist[v] = dist[u] + 1
            stack.append(v)
print(*dist[1:])
""",
    wrong_reason=r"^test \d+/4: wrong output$",
)


# ---------------------------------------------------------------------------------------------
# subtree: a tree rooted at 1 given by its edges; the size of every vertex's subtree. A path of
# 100 000 vertices needs recursion 100 000 deep (the idioms that raise the limits) or a stack.


def subtree_reference(text: str) -> str:
    data = text.split()
    n = int(data[0])
    adj = [[] for _ in range(n + 1)]
    for k in range(n - 1):
        u, v = int(data[1 + 2 * k]), int(data[2 + 2 * k])
        adj[u].append(v)
        adj[v].append(u)
    parent, order, seen = [0] * (n + 1), [], [False] * (n + 1)
    stack, seen[1] = [1], True
    while stack:
        u = stack.pop()
        order.append(u)
        for v in adj[u]:
            if not seen[v]:
                seen[v], parent[v] = True, u
                stack.append(v)
    size = [1] * (n + 1)
    for u in reversed(order[1:]):
        size[parent[u]] += size[u]
    return "\n".join(map(str, size[1:])) + "\n"


def subtree_brute(text: str) -> str:
    """Size of u's subtree = the vertices whose path to the root passes through u."""
    data = list(map(int, text.split()))
    n = data[0]
    adj = {u: set() for u in range(1, n + 1)}
    for k in range(n - 1):
        adj[data[1 + 2 * k]].add(data[2 + 2 * k])
        adj[data[2 + 2 * k]].add(data[1 + 2 * k])

    def path_to_root(x):
        prev, path = {1: None}, []
        frontier = [1]
        while frontier:
            u = frontier.pop()
            for v in adj[u]:
                if v not in prev:
                    prev[v] = u
                    frontier.append(v)
        while x is not None:
            path.append(x)
            x = prev[x]
        return path

    counts = [0] * (n + 1)
    for x in range(1, n + 1):
        for u in path_to_root(x):
            counts[u] += 1
    return "\n".join(map(str, counts[1:])) + "\n"


def _tree(n: int, edges: list[tuple[int, int]]) -> str:
    return f"{n}\n" + "".join(f"{u} {v}\n" for u, v in edges)


def _subtree_inputs(rng: random.Random) -> list[str]:
    small = _tree(7, [(1, 2), (1, 3), (2, 4), (2, 5), (5, 6), (3, 7)])
    single = _tree(1, [])
    rand_n = 100000
    random_tree = [(rng.randint(1, v - 1), v) for v in range(2, rand_n + 1)]
    rng.shuffle(random_tree)
    labels = list(range(2, 100001))
    rng.shuffle(labels)
    path = [1] + labels
    deep = [(path[i + 1], path[i]) if rng.random() < 0.5 else (path[i], path[i + 1]) for i in range(len(path) - 1)]
    rng.shuffle(deep)
    return [small, single, _tree(rand_n, random_tree), _tree(len(path), deep)]


SUBTREE_RECURSIVE = """
import sys
sys.setrecursionlimit(300000)
input = sys.stdin.readline
n = int(input())
adj = [[] for _ in range(n + 1)]
for _ in range(n - 1):
    u, v = map(int, input().split())
    adj[u].append(v)
    adj[v].append(u)
size = [1] * (n + 1)

def dfs(u, p):
    for v in adj[u]:
        if v != p:
            dfs(v, u)
            size[u] += size[v]

dfs(1, 0)
print("\\n".join(map(str, size[1:])))
"""

SUBTREE = dict(
    statement="n, then n-1 edges u v of a tree rooted at 1: print the subtree size of vertices 1..n, one a line.",
    solutions={
        "threading.stack_size + setrecursionlimit + Thread(target=main)": """
import sys, threading

def main():
    data = sys.stdin.buffer.read().split()
    n = int(data[0])
    adj = [[] for _ in range(n + 1)]
    for k in range(n - 1):
        u, v = int(data[1 + 2 * k]), int(data[2 + 2 * k])
        adj[u].append(v)
        adj[v].append(u)
    size = [0] * (n + 1)

    def dfs(u, p):
        s = 1
        for v in adj[u]:
            if v != p:
                s += dfs(v, u)
        size[u] = s
        return s

    dfs(1, 0)
    sys.stdout.write("\\n".join(map(str, size[1:])) + "\\n")

threading.stack_size(2**26)
sys.setrecursionlimit(1 << 20)
threading.Thread(target=main).start()
""",
        "setrecursionlimit only, recursive dfs": SUBTREE_RECURSIVE,
        "PyRival @bootstrap generator recursion": """
import sys
from types import GeneratorType

def bootstrap(f, stack=[]):
    def wrappedfunc(*args, **kwargs):
        if stack:
            return f(*args, **kwargs)
        to = f(*args, **kwargs)
        while True:
            if type(to) is GeneratorType:
                stack.append(to)
                to = next(to)
            else:
                stack.pop()
                if not stack:
                    break
                to = stack[-1].send(to)
        return to
    return wrappedfunc

input = sys.stdin.readline
n = int(input())
adj = [[] for _ in range(n + 1)]
for _ in range(n - 1):
    u, v = map(int, input().split())
    adj[u].append(v)
    adj[v].append(u)
size = [1] * (n + 1)

@bootstrap
def dfs(u, p):
    for v in adj[u]:
        if v != p:
            yield dfs(v, u)
            size[u] += size[v]
    yield None

dfs(1, 0)
sys.stdout.write("\\n".join(map(str, size[1:])) + "\\n")
""",
        "iterative, sys.exit() on the trivial case": """
import sys
data = sys.stdin.read().split()
n = int(data[0])
if n == 1:
    print(1)
    sys.exit()
adj = [[] for _ in range(n + 1)]
for k in range(n - 1):
    u, v = int(data[1 + 2 * k]), int(data[2 + 2 * k])
    adj[u].append(v)
    adj[v].append(u)
parent = [0] * (n + 1)
parent[1] = -1
order = [1]
for u in order:
    for v in adj[u]:
        if v != parent[u]:
            parent[v] = u
            order.append(v)
size = [1] * (n + 1)
for u in reversed(order):
    if parent[u] > 0:
        size[parent[u]] += size[u]
sys.stdout.write("\\n".join(map(str, size[1:])) + "\\n")
""",
    },
    wrong=SUBTREE_RECURSIVE.replace("sys.setrecursionlimit(300000)\n", ""),  # RecursionError on a deep tree
    wrong_reason=r"^test 4/4: runtime error: RecursionError\b",
)


# ---------------------------------------------------------------------------------------------
# lis: the length of the longest strictly increasing subsequence (DP with binary search).


def lis_reference(text: str) -> str:
    data = text.split()
    tails: list[int] = []
    for x in map(int, data[1:1 + int(data[0])]):
        k = bisect_left(tails, x)
        tails[k:k + 1] = [x]
    return f"{len(tails)}\n"


def lis_brute(text: str) -> str:
    data = list(map(int, text.split()))
    a = data[1:1 + data[0]]
    best = [1] * len(a)
    for j in range(len(a)):
        for i in range(j):
            if a[i] < a[j]:
                best[j] = max(best[j], best[i] + 1)
    return f"{max(best, default=0)}\n"


def _seq(a: list[int]) -> str:
    return f"{len(a)}\n{' '.join(map(str, a))}\n"


def _lis_inputs(rng: random.Random) -> list[str]:
    small = _seq([3, 1, 2, 2, 5, 4, 6])
    equal = _seq([7] * 1000)
    dups = _seq([rng.randint(1, 1000) for _ in range(200000)])  # many repeats: strict vs non-strict differ
    wide = _seq([rng.randint(-10**9, 10**9) for _ in range(200000)])
    return [small, equal, dups, wide]


LIS = dict(
    statement="n, then n integers: print the length of the longest strictly increasing subsequence.",
    solutions={
        "sys.stdin.readline, bisect": """
import sys
from bisect import bisect_left
input = sys.stdin.readline
n = int(input())
a = list(map(int, input().split()))
d = []
for x in a:
    i = bisect_left(d, x)
    if i == len(d):
        d.append(x)
    else:
        d[i] = x
print(len(d))
""",
        "for line in sys.stdin, os.write(1, ...)": """
import os, sys
from bisect import bisect_left
lines = [line for line in sys.stdin]
a = list(map(int, lines[1].split()))
tails = []
for x in a:
    k = bisect_left(tails, x)
    tails[k:k + 1] = [x]
os.write(1, b"%d\\n" % len(tails))
""",
        "input(), a main() guard": """
from bisect import bisect_left

def main():
    n = int(input())
    a = [int(x) for x in input().split()]
    tails = []
    for x in a:
        k = bisect_left(tails, x)
        if k == len(tails):
            tails.append(x)
        else:
            tails[k] = x
    print(len(tails))

if __name__ == "__main__":
    main()
""",
    },
    wrong="""
import sys
from bisect import bisect_right
n = int(sys.stdin.readline())
a = list(map(int, sys.stdin.readline().split()))
d = []
for x in a:
    i = bisect_right(d, x)  # non-decreasing instead of strictly increasing
    if i == len(d):
        d.append(x)
    else:
        d[i] = x
print(len(d))
""",
    wrong_reason=r"^test 1/4: wrong output$",
)


def _small_inputs(rng: random.Random) -> dict[str, list[str]]:
    """Random small inputs on which each reference must agree with its brute force."""
    return {
        "bigsum": [f"3\n{_digits(rng, rng.randint(1, 60))} {_digits(rng, rng.randint(1, 60))}\n0 "
                   f"{rng.randint(0, 10**6)}\n{10**rng.randint(1, 30) - 1} {rng.randint(1, 5)}\n" for _ in range(30)],
        "maxsub": [_arrays([[rng.randint(-9, 9) for _ in range(rng.randint(1, 8))] for _ in range(5)]) for _ in range(30)],
        "bfs": [_random_graph(rng, rng.randint(1, 9), rng.randint(0, 12)) for _ in range(30)],
        "subtree": [_tree(n, [(rng.randint(1, v - 1), v) for v in range(2, n + 1)]) for n in
                    (rng.randint(1, 12) for _ in range(30))],
        "lis": [_seq([rng.randint(0, 5) for _ in range(rng.randint(1, 10))]) for _ in range(30)],
    }


@functools.cache
def problems() -> tuple[Problem, ...]:
    rng = random.Random(SEED)
    small = _small_inputs(rng)
    specs = [("bigsum", BIGSUM, _bigsum_inputs, bigsum_reference, bigsum_brute),
             ("maxsub", MAXSUB, _maxsub_inputs, maxsub_reference, maxsub_brute),
             ("bfs", BFS, _bfs_inputs, bfs_reference, bfs_brute),
             ("subtree", SUBTREE, _subtree_inputs, subtree_reference, subtree_brute),
             ("lis", LIS, _lis_inputs, lis_reference, lis_brute)]
    return tuple(Problem(pid=pid, statement=spec["statement"], inputs=make(rng), reference=ref,
                         solutions={k: _program(v) for k, v in spec["solutions"].items()},
                         wrong=_program(spec["wrong"]), wrong_reason=spec["wrong_reason"], brute=brute,
                         small_inputs=small[pid])
                 for pid, spec, make, ref, brute in specs)
