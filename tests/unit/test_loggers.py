"""Each logger backend writes a fake 3-step run; every test reads the files back with the backend's
own reader (json, TensorBoard's EventAccumulator, W&B's record protobuf, MlflowClient)."""

import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from rlsys.config import ConfigError, RLSysConfig
from rlsys.config.validation import validate
from rlsys.data.batch import RolloutBatch
from rlsys.loggers.console import ConsoleBackend
from rlsys.loggers.run_logger import RunLogger
from rlsys.loop.metrics import read_metrics

PROMPTS = ["1+1=", "2+3=", "7*6="]


def fake_batch(step: int) -> RolloutBatch:
    ids = [np.arange(3), np.arange(3), np.arange(4), np.arange(4)]
    return RolloutBatch(prompt_id=np.array([0, 0, 2, 2]), group_id=np.array([0, 0, 1, 1]), sample_index=np.array([0, 1, 0, 1]),
                        prompt_token_ids=ids, response_token_ids=[np.arange(2)] * 4, behaviour_logprobs=[np.zeros(2)] * 4,
                        policy_version=np.full(4, step), finish_reason=["stop", "stop", "length", "stop"],
                        response_text=[f"2|{step}", "3", f"42\n{step}", "41"], ground_truth=["2", "2", "42", "42"],
                        data_source=["arithmetic"] * 4, reward=np.array([1.0, 0.0, 1.0, 0.0]))


def step_metrics(step: int) -> dict:
    return {"step": step, "training/global_step": step, "training/policy_version": step, "actor/pg_loss": 0.5 / step,
            "critic/score/mean": 0.25 * step, "critic/score/accuracy": 0.5, "response_length/mean": 2.0,
            "actor/ppo_kl": 1e-6, "actor/entropy": 1.5, "timing_s/step": 1.0, "val/pass@4": 0.75}


def run_fake(tmp_path: Path, backends: list[str], steps: int = 3) -> Path:
    cfg = RLSysConfig(run_dir=str(tmp_path / "run"))
    cfg.trainer.steps, cfg.logger.backends, cfg.logger.samples_every, cfg.logger.samples_n = steps, backends, 2, 2
    with RunLogger(validate(cfg), PROMPTS) as log:
        for step in range(1, steps + 1):
            log.log(step_metrics(step), fake_batch(step))
    return Path(cfg.run_dir)


def test_jsonl_writes_metrics_and_sample_tables(tmp_path):
    run = run_fake(tmp_path, ["jsonl"])
    rows = read_metrics(run / "metrics.jsonl")
    assert rows == [step_metrics(step) for step in (1, 2, 3)]  # every metric under the name it was logged with
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert [(s["step"], s["prompt"], s["response"], s["reward"]) for s in samples] == \
        [(2, "1+1=", "2|2", 1.0), (2, "7*6=", "42\n2", 1.0)]


def test_tensorboard_scalars_and_sample_text_read_back(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = run_fake(tmp_path, ["tensorboard"])
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("actor/pg_loss")] == [(1, 0.5), (2, 0.25), (3, pytest.approx(0.5 / 3))]
    assert [e.step for e in acc.Scalars("timing_s/step")] == [1, 2, 3]
    (text,) = acc.Tensors("samples/text_summary")
    table = text.tensor_proto.string_val[0].decode()
    assert text.step == 2 and "| 7*6= | 42<br>2 |" in table and "2\\|2" in table


def wandb_records(path: Path):
    """The records of a .wandb transaction log (W&B's leveldb-style log of Record protobufs)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, block, pos, chunk = path.read_bytes(), 32768, 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:
            break
        chunk += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST
            rec = pb.Record()
            rec.ParseFromString(chunk)
            yield rec
            chunk = b""


def test_wandb_offline_history_and_table_read_back(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    run = run_fake(tmp_path, ["wandb"])
    (log,) = (run / "wandb").glob("offline-run-*/run-*.wandb")
    history = [{i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
               for r in wandb_records(log) if r.WhichOneof("record_type") == "history"]
    rows = [h for h in history if "actor/pg_loss" in h]
    assert [(h["_step"], h["actor/pg_loss"]) for h in rows] == [(1, 0.5), (2, 0.25), (3, pytest.approx(0.5 / 3))]
    (table,) = log.parent.glob("files/media/table/samples_2_*.table.json")
    t = json.loads(table.read_text())
    assert t["columns"][:2] == ["prompt", "response"] and [r[1] for r in t["data"]] == ["2|2", "42\n2"]


def test_mlflow_file_store_metrics_and_table_read_back(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    run = run_fake(tmp_path, ["mlflow"])
    client = MlflowClient(tracking_uri=(run / "mlruns").as_uri())
    (r,) = client.search_runs([client.get_experiment_by_name("rlsys").experiment_id])
    assert r.info.status == "FINISHED" and r.data.params["trainer.steps"] == "3"
    hist = client.get_metric_history(r.info.run_id, "actor/pg_loss")
    assert sorted((m.step, m.value) for m in hist) == [(1, 0.5), (2, 0.25), (3, pytest.approx(0.5 / 3))]
    assert client.get_metric_history(r.info.run_id, "val/pass_at_4")[0].value == 0.75
    path = client.download_artifacts(r.info.run_id, "samples/step_000002.json", str(tmp_path))
    assert json.loads(Path(path).read_text())["data"][1][:2] == ["7*6=", "42\n2"]


def test_console_prints_a_progress_line_with_eta_and_key_metrics(tmp_path):
    cfg = RLSysConfig(run_dir=str(tmp_path))
    cfg.trainer.steps, cfg.logger.print_every = 4, 2
    out = io.StringIO()
    con = ConsoleBackend(cfg, tmp_path, stream=out)
    for step in range(1, 5):
        con.log(step_metrics(step), step)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("[##########----------] 2/4  50% 00:00<00:00")
    assert "score 0.500" in lines[0] and "kl(beh) 1.0e-06" in lines[0] and "4/4 100%" in lines[1]


def test_unknown_or_uninstalled_backend_fails_at_start(tmp_path, monkeypatch):
    cfg = RLSysConfig(run_dir=str(tmp_path))
    cfg.logger.backends = ["console", "neptune"]
    with pytest.raises(ConfigError, match="logger.backends.*'neptune'"):
        validate(cfg)
    import rlsys.loggers as loggers
    monkeypatch.setattr(loggers.importlib.util, "find_spec", lambda name: None)
    cfg.logger.backends = ["wandb"]
    with pytest.raises(ConfigError, match="logger.backends.*needs the package 'wandb'"):
        validate(cfg)
