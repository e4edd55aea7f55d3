"""call_with_retries against a real Ray actor whose process exits: the call is resent to the actor Ray
restarted, and an actor that dies on every attempt is reported lost (rlsys/runtime/faults.py)."""

import pytest
import ray

from rlsys.runtime.faults import ActorLost, FaultLog, call_with_retries


@ray.remote(max_restarts=-1)
class Flaky:
    """Dies (the process exits) on its first `die` calls; Ray restarts it with the same arguments."""

    def __init__(self, marker: str, die: int):
        import os

        self.marker, self.die = marker, die
        self.deaths = len(open(marker).read()) if os.path.exists(marker) else 0

    def answer(self, x: int) -> int:
        if self.deaths < self.die:
            with open(self.marker, "a") as f:
                f.write("x")
            import os

            os._exit(1)
        return x * 10


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=1, include_dashboard=False, address="local")
    yield
    ray.shutdown()


def test_a_call_is_resent_to_the_restarted_actor(local_ray, tmp_path):
    faults, actor = FaultLog(), Flaky.remote(str(tmp_path / "deaths"), die=2)
    assert call_with_retries(lambda _: (actor, actor.answer.remote(4)), "reference", faults, retries=2) == 40
    assert faults.take() == {"faults/reference_deaths": 2}


def test_an_actor_that_dies_on_every_attempt_is_reported_lost(local_ray, tmp_path):
    faults, actor = FaultLog(), Flaky.remote(str(tmp_path / "deaths"), die=5)
    with pytest.raises(ActorLost, match="reference: the actor died on all 2 attempts"):
        call_with_retries(lambda _: (actor, actor.answer.remote(4)), "reference", faults, retries=1)
    assert faults.take() == {"faults/reference_deaths": 2}
