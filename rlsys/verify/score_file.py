"""`rlsys verify INPUT.jsonl [-o OUTPUT.jsonl] [--explain] [key=value ...]`: score rows with the verifier pool.

Input rows: {"data_source", "response", "ground_truth"} and optionally "tests" (code: used
instead of ground_truth), "extra_info" (for verifiers that take it), "prompt" (text or chat messages;
required where a reward model scores the row: verifier.models, verifier.combine) and "id". Output: one JSON line per row, in order, with reward, parsed
answer, reason, error, timeout and seconds, so a reward function can be debugged without
training. --explain also prints, per row, why it got its reward: for code rows, each test that
ran, its result, and the evidence that made the tests count. Overrides are the config's keys,
e.g. verifier.timeout_s=5 cluster.num_verifiers=2.
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from pathlib import Path

from rlsys.data.dataset import DatasetError

USAGE = "usage: rlsys verify INPUT.jsonl [-o OUTPUT.jsonl] [--explain] [key=value ...]"


def read_rows(path: str, known: set[str], need_prompt: set[str] = frozenset()) -> list[dict]:
    """Rows checked up front; a bad one fails naming the file and line, before any actor starts.
    need_prompt: data_sources whose rows must carry a prompt (a reward model reads it)."""
    from rlsys.verify import check_ground_truth

    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"{path}: input file does not exist")
    rows = []
    for line_no, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path} line {line_no}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DatasetError(f"{where}: not JSON ({e})") from None
        if not isinstance(row, dict):
            raise DatasetError(f"{where}: expected a JSON object")
        if row.get("data_source") not in known:
            raise DatasetError(f"{where}: unknown data_source {row.get('data_source')!r}; known: {sorted(known)}")
        if not isinstance(row.get("response"), str):
            raise DatasetError(f"{where}: 'response' must be a string")
        truth = row.get("tests", row.get("ground_truth"))
        truth = truth if truth is None or isinstance(truth, str) else json.dumps(truth)
        if truth is None or not truth.strip():
            raise DatasetError(f"{where}: empty 'ground_truth' (and no 'tests')")
        try:
            check_ground_truth(row["data_source"], truth)
        except (ValueError, SyntaxError) as e:
            raise DatasetError(f"{where}: ground truth is not valid for data_source {row['data_source']!r}: {e}") from None
        prompt = row.get("prompt")
        if isinstance(prompt, str):
            prompt = [{"role": "user", "content": prompt}]
        ok = isinstance(prompt, list) and prompt and all(isinstance(m, dict) and isinstance(m.get("content"), str)
                                                         and isinstance(m.get("role"), str) for m in prompt)
        if prompt is not None and not ok:
            raise DatasetError(f"{where}: 'prompt' must be text or chat messages ({{role, content}} objects)")
        if prompt is None and row["data_source"] in need_prompt:
            raise DatasetError(f"{where}: data_source {row['data_source']!r} is scored by a reward model, which reads "
                               f"the prompt: give the row a 'prompt'")
        rows.append({"line": line_no, "id": row.get("id"), "data_source": row["data_source"],
                     "response": row["response"], "truth": truth, "extra_info": row.get("extra_info"), "prompt": prompt})
    if not rows:
        raise DatasetError(f"{path}: no rows")
    return rows


def parse_args(argv: list[str]) -> tuple[str, str | None, list[str], bool]:
    args, out, overrides, explain = [], None, [], False
    it = iter(argv)
    for a in it:
        if a in ("-o", "--output"):
            out = next(it, None)
        elif a == "--explain":
            explain = True
        elif "=" in a:
            overrides.append(a)
        else:
            args.append(a)
    if len(args) != 1 or (out is None and "-o" in argv):
        print(USAGE, file=sys.stderr)
        sys.exit(2)
    return args[0], out, overrides, explain


def compose_config(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from rlsys.config import to_dataclass
    from rlsys.train import CONF_DIR
    from rlsys.config.validation import validate

    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        dcfg = compose("config", overrides=[*overrides, "run_dir=."])
    return validate(to_dataclass(dcfg))


def score_file(input_path: str, output_path: str, cfg, log=print) -> list[dict]:
    from rlsys.config.rewards import model_sources
    from rlsys.runtime.cluster import init_ray, place_roles, verifier_roles
    from rlsys.loop.roles import start_verifiers
    from rlsys.verify import configure, known_sources

    configure(cfg.verifier)
    rows = read_rows(input_path, known_sources(cfg.verifier), model_sources(cfg.verifier))
    init_ray(cfg)
    pool = start_verifiers(cfg, place_roles(cfg, roles=verifier_roles(cfg)))
    t0 = time.perf_counter()
    rewards, details = pool.score_texts([r["response"] for r in rows], [r["truth"] for r in rows],
                                        [r["data_source"] for r in rows], [r["extra_info"] for r in rows],
                                        [r["prompt"] for r in rows])
    wall = time.perf_counter() - t0
    out = []
    for r, reward, d in zip(rows, rewards, details):
        rec = {"line": r["line"], "id": r["id"], "data_source": r["data_source"], "reward": float(reward),
               "parsed": None, "reason": "", "error": None, "timeout": False, **d.to_dict()}
        out.append(rec)
    Path(output_path).parent.mkdir(parents=True, exist_ok=True)
    with open(output_path, "w") as f:
        for rec in out:
            f.write(json.dumps(rec, default=str) + "\n")
    _summary(out, wall, output_path, log)
    return out


def explain(rec: dict) -> list[str]:
    """Why a row got its reward, as lines: the reason, then (code) each test and the evidence."""
    name = f"line {rec['line']}" + (f" ({rec['id']})" if rec.get("id") is not None else "")
    lines = [f"{name} [{rec['data_source']}] reward {rec['reward']:g}: {rec.get('reason') or ''}"]
    if rec.get("error"):
        lines.append(f"    error: {rec['error']}")
    for t in rec.get("tests") or []:
        where = f"line {t['line']}: " if t.get("line") else ""
        answers = f", {t['program_answers']} program answer(s)" if "program_answers" in t else ""
        lines.append(f"    {where}{t['test']}  -> {t['result']}{answers}")
        lines += [f"        {a}" for a in t.get("answers", [])]
        if t.get("note"):
            lines.append(f"        note: {t['note']}")
    if rec.get("reward") and rec.get("evidence"):
        lines.append(f"    evidence: {rec['evidence']}")
    return lines


def _summary(out: list[dict], wall: float, path: str, log) -> None:
    by = defaultdict(list)
    for rec in out:
        by[rec["data_source"]].append(rec)
    log(f"{'data_source':<14}{'rows':>6}{'reward':>9}{'errors':>8}{'timeouts':>10}")
    for src, recs in sorted(by.items()):
        log(f"{src:<14}{len(recs):>6}{sum(r['reward'] for r in recs) / len(recs):>9.3f}"
            f"{sum(1 for r in recs if r['error']):>8}{sum(1 for r in recs if r['timeout']):>10}")
    log(f"{len(out)} rows in {wall:.2f}s ({len(out) / max(wall, 1e-9):.1f} samples/s) -> {path}")


def main(argv: list[str]) -> None:
    from rlsys.runtime.cluster import ClusterError
    from rlsys.config import ConfigError

    input_path, output_path, overrides, want_explain = parse_args(argv)
    output_path = output_path or str(Path(input_path).with_suffix("")) + ".rewards.jsonl"
    try:
        out = score_file(input_path, output_path, compose_config(overrides))
        if want_explain:
            for rec in out:
                print("\n".join(explain(rec)))
    except (ConfigError, DatasetError, ClusterError) as e:
        print(f"rlsys: error: {e}", file=sys.stderr)
        sys.exit(2)
