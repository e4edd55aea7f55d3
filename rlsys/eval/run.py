"""`rlsys eval`: unbiased pass@k of checkpoints on a parquet eval set, sampled by the vLLM fleet
and scored by the verifier pool; a table on stdout, passk.json, passk_counts.parquet, passk.png."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rlsys.config import ConfigError, RLSysConfig
from rlsys.eval.passk import ks_up_to, pass_at_k_curve


def problem_counts(batch) -> dict[str, np.ndarray]:
    """Per problem (prompt_id): data_source, samples n and correct c."""
    ids = np.unique(batch.prompt_id)
    pos = {int(p): i for i, p in enumerate(ids)}
    n, c = np.zeros(len(ids), np.int64), np.zeros(len(ids), np.int64)
    source = [""] * len(ids)
    for pid, ok, s in zip(batch.prompt_id, batch.correct, batch.data_source):
        i = pos[int(pid)]
        n[i] += 1
        c[i] += int(ok)
        source[i] = s
    return {"prompt_id": ids, "data_source": np.array(source), "n": n, "c": c}


def curves(counts: dict[str, np.ndarray], ks: list[int]) -> dict[str, dict[int, float]]:
    """pass@k per data_source and overall."""
    out = {"overall": pass_at_k_curve(counts["n"], counts["c"], ks)}
    for s in np.unique(counts["data_source"]):
        m = counts["data_source"] == s
        out[str(s)] = pass_at_k_curve(counts["n"][m], counts["c"][m], ks)
    return out


def sample_counts(cfg: RLSysConfig, fleet, verifiers, data, seed: int, catch_up=None) -> dict[str, np.ndarray]:
    e = cfg.eval
    batch = fleet.generate(data, np.arange(len(data)), seed=seed, n=e.n, temperature=e.temperature, top_p=e.top_p,
                           catch_up=catch_up)
    from rlsys.verify.pool import require_scored

    return problem_counts(require_scored(verifiers.score(batch, data), "pass@k evaluation"))


def evaluate_checkpoints(cfg: RLSysConfig, log=print) -> dict:
    """Every checkpoint in turn on one engine set's placement; results written to cfg.run_dir."""
    import ray
    from transformers import AutoTokenizer

    from rlsys.runtime.cluster import init_ray, place_roles, verifier_roles
    from rlsys.loop.prepare import prepare_data_and_model
    from rlsys.data.dataset import load_prompts
    from rlsys.models.resolve import check_model_path
    from rlsys.loop.roles import start_fleet, start_verifiers
    from rlsys.verify import configure, known_sources

    e, run_dir = cfg.eval, Path(cfg.run_dir)
    ckpts = [str(check_model_path(c, key=f"eval.checkpoints[{i}]")) for i, c in enumerate(e.checkpoints)]
    data_path = e.data_path
    if data_path is None or not ckpts:  # the base model and/or the task's held-out split
        _, held_out, base, _ = prepare_data_and_model(cfg, log)
        ckpts, data_path = ckpts or [base], data_path or held_out.path
    configure(cfg.verifier)
    init_ray(cfg)
    groups = place_roles(cfg, roles=("rollout", *verifier_roles(cfg)))
    verifiers = start_verifiers(cfg, groups)
    ks, results, tables = ks_up_to(e.n), {}, []
    for ckpt in ckpts:
        data = load_prompts(data_path, AutoTokenizer.from_pretrained(ckpt), known_sources(cfg.verifier),
                            cfg.rollout.max_model_len - cfg.rollout.max_new_tokens)
        fleet = start_fleet(cfg, groups, ckpt)
        counts = sample_counts(cfg, fleet, verifiers, data, seed=cfg.trainer.seed)
        for engine in fleet.engines:
            ray.kill(engine)
        results[ckpt] = curves(counts, ks)
        tables.append(pa.table({"checkpoint": [ckpt] * len(counts["n"]), **counts}))
        log(format_table({ckpt: results[ckpt]}, ks))
    run_dir.mkdir(parents=True, exist_ok=True)
    report = {"data_path": str(data_path), "n": e.n, "temperature": e.temperature, "top_p": e.top_p,
              "pass_at_k": {c: {s: {str(k): v for k, v in cur.items()} for s, cur in r.items()} for c, r in results.items()}}
    (run_dir / "passk.json").write_text(json.dumps(report, indent=2))
    pq.write_table(pa.concat_tables(tables), run_dir / "passk_counts.parquet")
    plot(results, ks, run_dir / "passk.png")
    log(f"pass@k of {len(ckpts)} checkpoint(s), n={e.n}: {run_dir}/passk.json, passk_counts.parquet, passk.png")
    return report


def format_table(results: dict[str, dict[str, dict[int, float]]], ks: list[int]) -> str:
    head = f"{'checkpoint':<40} {'data_source':<14}" + "".join(f"{'@' + str(k):>8}" for k in ks)
    lines = [head, "-" * len(head)]
    for ckpt, per_source in results.items():
        name = ckpt if len(ckpt) <= 40 else "..." + ckpt[-37:]
        for source, cur in per_source.items():
            lines.append(f"{name:<40} {source:<14}" + "".join(f"{cur[k]:>8.3f}" for k in ks))
    return "\n".join(lines)


def plot(results: dict, ks: list[int], path: Path) -> None:
    """Overall pass@k against k on a log2 axis, one curve per checkpoint."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for ckpt, per_source in results.items():
        ax.plot(ks, [per_source["overall"][k] for k in ks], marker="o", label=Path(ckpt).parent.name or ckpt)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k")
    ax.set_ylabel("pass@k")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def check_eval_config(cfg: RLSysConfig) -> None:
    if cfg.eval.data_path and not Path(cfg.eval.data_path).exists():
        raise ConfigError(f"config key 'eval.data_path': {cfg.eval.data_path} does not exist")
