"""The unit lane starts no Ray cluster and no process group (and so no learner worker or engine):
a test that tries fails here and belongs in tests/integration."""

import pytest
import ray
import torch.distributed


def _refuse(what: str):
    def refuse(*_, **__):
        raise RuntimeError(f"unit tests must not start {what}; move this test to tests/integration")

    return refuse


@pytest.fixture(autouse=True)
def no_cluster(monkeypatch):
    monkeypatch.setattr(ray, "init", _refuse("Ray"))
    monkeypatch.setattr(torch.distributed, "init_process_group", _refuse("a torch.distributed process group"))
