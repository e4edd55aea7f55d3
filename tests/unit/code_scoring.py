"""Scoring code rows in the unit lane: each row is its own sandbox process, so a module's table of
rows is scored 4 at a time up front and its tests read the results."""

from concurrent.futures import ThreadPoolExecutor

from rlsys.verify.code_tests import code_execution


class ScoredRows:
    """code_execution of (program, tests) rows, each scored once."""

    def __init__(self):
        self.results = {}

    def __call__(self, program: str, tests: str) -> tuple[float, dict]:
        if (program, tests) not in self.results:
            self.results[program, tests] = code_execution(f"```python\n{program}\n```", tests)
        return self.results[program, tests]

    def score_ahead(self, rows) -> None:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda row: self(*row), rows))
