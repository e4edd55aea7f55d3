"""Deadlines derived from measured time (rlsys/runtime/deadlines.py) and the watchdog that says what a
long step waits on (rlsys/runtime/watchdog.py). Real stopped actors: tests/integration/test_actor_restart.py,
test_fleet.py, test_verifier_pool.py and test_roles.py."""

import math
import threading
import time

import pytest

from rlsys.runtime.deadlines import FLOOR_S, START_S, Deadlines
from rlsys.runtime.watchdog import Waits, Watchdog


def test_limits_scale_with_the_measured_time_per_unit_and_the_work_asked():
    d = Deadlines()
    assert d.limits("reference", 1000) == (START_S, START_S)  # nothing measured yet: the start-up limit
    for seconds in (1.0, 2.0, 4.0):  # calls of 1000 tokens: 1, 2, 4 ms per token
        d.record("reference", seconds, units=1000)
    p99_unit = 0.002 + 0.98 * (0.004 - 0.002)  # linear interpolation: the 99th percentile of 3 values sits at rank 1.98
    p99_call = 1000 * p99_unit  # 3.96 s
    assert d.limits("reference", 100) == (FLOOR_S, pytest.approx(10 * p99_call))  # a small call: a whole call's time
    suspect, hung = d.limits("reference", 50_000)  # 198 s of work at the measured p99
    assert suspect == pytest.approx(3 * p99_unit * 50_000) and hung == pytest.approx(10 * p99_unit * 50_000)
    assert d.limits("reference", 50_000, worst_case=120.0)[1] == pytest.approx(hung + 120.0)
    assert d.limits("teacher", 50_000) == (START_S, START_S)  # measured per kind of call


def test_the_scale_multiplies_every_limit_and_zero_waits_forever():
    half, forever = Deadlines(scale=0.5), Deadlines(scale=0.0)
    half.record("verifier", 1.0)
    assert half.limits("verifier") == (0.5 * FLOOR_S, 0.5 * FLOOR_S) and half.probe_s == 0.5 * FLOOR_S
    forever.record("verifier", 1.0)
    assert forever.limits("verifier") == (math.inf, math.inf) and forever.probe_s == math.inf


def test_a_fixed_role_deadline_overrides_the_derived_one_for_every_call_of_the_role():
    d = Deadlines(fixed={"learner": 600.0, "verifier": 0.0, "reference": 90.0})  # 0: derived
    d.record("learner:train_step", 1.0)
    assert d.limits("learner:train_step") == (FLOOR_S, 600.0) and d.limits("learner:checkpoint") == (FLOOR_S, 600.0)
    assert d.limits("verifier") == (START_S, START_S)
    assert d.limits("teacher")[1] == 90.0  # the teacher is a reference server


def test_the_watchdog_says_what_an_overdue_step_waits_on():
    lines, waits = [], Waits()
    with Watchdog(lines.append, every_s=0.05, waits=waits, min_s=0.2, first_s=0.4) as dog:
        dog.step_started(1)  # the first step (start-up) is allowed first_s
        time.sleep(0.3)
        assert lines == []
        dog.step_ended()
        for step in (2, 3):  # fast steps: the median
            dog.step_started(step)
            time.sleep(0.01)
            dog.step_ended()
        dog.step_started(4)
        with waits.waiting("rollout", lambda: "engine 1 owes 3 groups, last message 40 s ago"), \
                waits.waiting("verifier", "12 samples"):
            time.sleep(0.1)
            assert lines == []  # not past max(min_s, 3 x the median step) yet (0.2 s: the median is 0.01 s)
            time.sleep(0.3)
        said = list(lines)
        dog.step_ended()
    assert said, "an overdue step said nothing"
    assert "watchdog: step 4 has run" in said[0] and "engine 1 owes 3 groups, last message 40 s ago" in said[0]
    assert "verifier: 12 samples, waiting" in said[0]
    assert waits.describe() == []  # the waits unregister when they end


def test_waits_are_registered_from_several_threads_and_a_broken_description_does_not_break_them():
    waits, started, release = Waits(), threading.Barrier(5), threading.Event()

    def wait(i):
        with waits.waiting(f"kind{i}", (lambda: 1 / 0) if i == 0 else f"call {i}"):
            started.wait()
            release.wait()

    threads = [threading.Thread(target=wait, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    started.wait()
    said = waits.describe()
    release.set()
    for t in threads:
        t.join()
    assert len(said) == 4 and any("no description: ZeroDivisionError" in s for s in said)
    assert {s.split(":")[0] for s in said} == {"kind0", "kind1", "kind2", "kind3"}
