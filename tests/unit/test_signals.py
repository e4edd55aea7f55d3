"""SIGTERM ends a run as Ctrl-C does (rlsys/runtime/signals.py, rlsys/train.py): the run's own
interrupt path (summary, release, resume) runs, and the command exits 143. The Ctrl-C path end to end,
with a real run: tests/e2e/test_resume.py."""

import os
import signal
import time

import pytest
from omegaconf import OmegaConf

from rlsys.config import RLSysConfig
from rlsys.runtime.signals import Terminated, raise_if_terminated, signals_kill, sigterm_interrupts
from rlsys.train import run_command


def test_sigterm_raises_terminated_inside_and_keeps_the_previous_handler_outside():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated):
        with sigterm_interrupts():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler runs at the next bytecode: never reached
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_sigterm_whose_raise_was_swallowed_is_raised_again_between_steps():
    with sigterm_interrupts():
        raise_if_terminated()  # nothing arrived: goes on
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except Terminated:
            pass  # swallowed, as code in a __del__ would
        with pytest.raises(Terminated):
            raise_if_terminated()


def test_while_the_run_releases_its_actors_a_second_signal_takes_its_default_action():
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's (a shell's `&` starts us ignoring it)
    try:
        with sigterm_interrupts():
            with signals_kill():
                assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
                assert signal.getsignal(signal.SIGINT) is signal.SIG_DFL
            assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # back
    finally:
        signal.signal(signal.SIGINT, before)


def test_an_ignored_sigint_stays_ignored_while_the_run_releases_its_actors():
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as `rlsys train &` from a script starts
    try:
        with signals_kill():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_command_that_gets_sigterm_says_so_and_exits_143(capsys):
    ran = []

    def action(cfg):
        ran.append(cfg.run_dir)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)

    with pytest.raises(SystemExit) as e:
        run_command(OmegaConf.structured(RLSysConfig(run_dir="/tmp/x")), action)
    assert e.value.code == 143 and ran == ["/tmp/x"]  # the action ran, then the signal ended it
    assert "rlsys: terminated (SIGTERM)" in capsys.readouterr().err
