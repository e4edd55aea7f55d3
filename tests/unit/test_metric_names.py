"""docs/metrics.md against the code: every metric name rlsys writes is in its table, every row names a
metric its file writes, and the producers that can run without Ray emit only documented names."""

import re
from pathlib import Path

import numpy as np

from rlsys.data.batch import RolloutBatch
from rlsys.learner.objective import LEARNER_STATS
from rlsys.learner.spec import SPECS
from rlsys.loop.metrics import StepTimer, step_metrics
from rlsys.sync.result import SyncResult
from rlsys.verify.details import VerifierDetails

ROOT = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^\| `([^`]+)` \| .+ \| `([^`]+)` \|$", re.M)


def documented() -> dict[str, str]:
    """name -> the file the table says computes it."""
    rows = ROW.findall((ROOT / "docs" / "metrics.md").read_text())
    assert len(rows) == len({name for name, _ in rows}) > 50, "a name is listed twice, or the table did not parse"
    return dict(rows)


def quoted(name: str) -> str:
    return f'"{name}"'


def names_in_code(groups: set[str]) -> dict[str, set[str]]:
    """Quoted strings (f-string templates included) of the form group/..., per file of rlsys/."""
    pattern = re.compile(r'"((?:%s)/[\w@/{}]+)"' % "|".join(sorted(groups)))
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "rlsys").rglob("*.py")):
        for name in pattern.findall(path.read_text()):
            found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_documented_metric_is_written_by_the_file_its_row_names():
    for name, path in documented().items():
        assert quoted(name) in (ROOT / path).read_text(), f"docs/metrics.md: {name} is not in {path}"


def test_every_metric_name_in_the_code_is_documented():
    docs = documented()
    groups = {name.split("/")[0] for name in docs if "/" in name}
    in_code = names_in_code(groups)
    undocumented = {name: sorted(files) for name, files in in_code.items() if name not in docs}
    assert not undocumented, f"metric names missing from docs/metrics.md: {undocumented}"
    assert len(in_code) > 50  # the scan found the producers


def fake_batch() -> RolloutBatch:
    n = 4
    batch = RolloutBatch(prompt_id=np.array([0, 0, 1, 1]), group_id=np.array([0, 0, 1, 1]),
                         sample_index=np.array([0, 1, 0, 1]), prompt_token_ids=[np.arange(3)] * n,
                         response_token_ids=[np.arange(2)] * n, behaviour_logprobs=[np.zeros(2)] * n,
                         policy_version=np.zeros(n, np.int64), finish_reason=["stop", "length", "stop", "stop"],
                         response_text=["1", "2", "3", "4"], ground_truth=["1"] * n, data_source=["arithmetic"] * n,
                         reward=np.array([1.0, 0.0, 0.0, 1.0]))
    batch.advantages = [np.full(2, 0.5), np.full(2, -0.5)] * 2
    batch.verifier_details = [VerifierDetails(seconds=0.1), VerifierDetails(seconds=0.2, error="boom"),
                              VerifierDetails(seconds=0.1), VerifierDetails(timeout=True)]
    return batch


def test_step_metrics_and_declared_stats_use_documented_names():
    docs = set(documented())
    train = {s.name: 1.0 for s in LEARNER_STATS}  # the learner ranks' stats, as learner/worker.py names them
    m = step_metrics(3, 4, fake_batch(), train, SyncResult(bytes=2_000_000_000, seconds=1.0), StepTimer())
    assert set(m) - {"step"} <= docs and m["step"] == m["training/global_step"] == 3
    assert m["training/policy_version"] == 4 and m["critic/score/accuracy"] == 0.5
    assert m["reward/verifier_errors"] == m["reward/verifier_timeouts"] == 1 and m["perf/update_weights_gbps"] == 2.0
    builtin = [s for s in SPECS.values() if s.fn.__module__.startswith("rlsys.")]  # not the tests' plugins
    declared = {st.key for s in builtin for st in s.stats}
    assert declared <= docs and {"actor/pg_clipfrac", "critic/vf_loss", "rollout_corr/kl_k1"} <= declared
