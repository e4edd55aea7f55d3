"""call_with_retries against a real Ray actor whose process exits: the call is resent to the actor Ray
restarted, and an actor that dies on every attempt is reported lost (rlsys/runtime/faults.py). An actor
stopped mid-call (SIGSTOP: alive but stuck) is found at its deadline, killed and the call resent; one
that is only slow is left to finish (rlsys/runtime/deadlines.py)."""

import os
import signal
import time

import pytest
import ray

from rlsys.runtime.deadlines import FLOOR_S, PROBE_GROUP, Deadlines
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
    with pytest.raises(ActorLost, match="reference: the actor died or hung on all 2 attempts"):
        call_with_retries(lambda _: (actor, actor.answer.remote(4)), "reference", faults, retries=1)
    assert faults.take() == {"faults/reference_deaths": 2}


@ray.remote(max_restarts=-1, concurrency_groups=PROBE_GROUP)
class Sleeper:
    """Answers after `seconds`; `ping` answers beside a running call, as the role actors' do."""

    def answer(self, x: int, seconds: float) -> int:
        time.sleep(seconds)
        return x * 10

    def pid(self) -> int:
        return os.getpid()

    def ping(self) -> bool:
        return True


def test_a_stopped_actor_is_killed_at_its_deadline_and_the_call_resent(local_ray):
    faults, actor, deadlines = FaultLog(), Sleeper.remote(), Deadlines(scale=0.1)  # a floor of 3 s
    call = lambda seconds: call_with_retries(lambda _: (actor, actor.answer.remote(4, seconds)), "verifier",  # noqa: E731
                                             faults, deadlines=deadlines)
    assert call(0.05) == 40  # measured: 0.05 s per call, so its deadlines are the floor's
    suspect, hung = deadlines.limits("verifier")
    assert suspect == hung == pytest.approx(0.1 * FLOOR_S)
    stopped = ray.get(actor.pid.remote())
    ref = actor.answer.remote(1, 0.0)  # queued behind the stop: the resent call must not need it
    os.kill(stopped, signal.SIGSTOP)
    t0 = time.monotonic()
    assert call(0.05) == 40  # the same answer, from the restarted actor
    took = time.monotonic() - t0
    assert suspect <= took < suspect + deadlines.probe_s + 15, took
    assert faults.take() == {"faults/hangs_verifier": 1}
    assert ray.get(actor.pid.remote()) != stopped
    del ref


def test_a_slow_actor_that_answers_probes_is_left_to_finish(local_ray):
    """Past the suspect deadline the actor answers its probe: slow, not stuck; it is killed only past the
    hung deadline (here fixed by cluster.deadline_s)."""
    faults, actor = FaultLog(), Sleeper.remote()
    deadlines = Deadlines(scale=0.05, fixed={"reference": 4.0})
    assert deadlines.limits("reference") == (pytest.approx(0.05 * FLOOR_S), 4.0)
    pid = ray.get(actor.pid.remote())
    t0 = time.monotonic()
    assert call_with_retries(lambda _: (actor, actor.answer.remote(4, 2.5)), "reference", faults,
                             deadlines=deadlines) == 40
    assert 2.5 <= time.monotonic() - t0 < 4.0 and faults.take() == {} and ray.get(actor.pid.remote()) == pid
    with pytest.raises(ActorLost, match="died or hung on all 1 attempts"):  # past the hung deadline: killed
        call_with_retries(lambda _: (actor, actor.answer.remote(4, 60.0)), "reference", faults, retries=0,
                          deadlines=deadlines)
    assert faults.take() == {"faults/hangs_reference": 1} and ray.get(actor.pid.remote()) != pid
