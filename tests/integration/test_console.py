"""The quiet console (rlsys/runtime/quiet_console.py): library warnings and actor output go to <run>/rlsys.log;
errors, the driver's own lines and a failing actor's exception still reach the console."""

import subprocess
import sys
from pathlib import Path


from tests.conftest import ROOT

DRIVER = r'''
import logging, sys, warnings
from rlsys.config import RLSysConfig
from rlsys.runtime.quiet_console import setup_console
cfg = RLSysConfig(run_dir=sys.argv[1])
setup_console(cfg)
import transformers
transformers.utils.logging.get_logger("transformers.foo").warning("HF-LIBRARY-WARNING")
warnings.warn("PY-WARNING")
logging.getLogger("ray").info("RAY-INFO")
logging.getLogger("somelib").error("LIBRARY-ERROR")
print("OWN-LINE")
raise RuntimeError("DRIVER-FAILS")
'''

ACTORS = r'''
import sys, ray
from rlsys.config import RLSysConfig
from rlsys.runtime.quiet_console import ray_init_options
cfg = RLSysConfig(run_dir=sys.argv[1])
env = {"env_vars": {}}
ray.init(num_cpus=1, include_dashboard=False, runtime_env=env, **ray_init_options(cfg, env))

@ray.remote
class Chatty:
    def work(self):
        print("ACTOR-STDOUT")
        print("ACTOR-STDERR", file=sys.stderr)
        raise ValueError("ACTOR-FAILS")

a = Chatty.remote()
ray.get(a.work.remote())
'''


def run(script: str, run_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script, str(run_dir)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})


def test_driver_warnings_go_to_the_log_and_errors_to_the_console(tmp_path):
    proc = run(DRIVER, tmp_path)
    console, log = proc.stdout + proc.stderr, (tmp_path / "rlsys.log").read_text()
    assert proc.returncode == 1 and "OWN-LINE" in proc.stdout
    assert "RuntimeError: DRIVER-FAILS" in proc.stderr and "Traceback" in proc.stderr  # the error, in full
    assert "LIBRARY-ERROR" in proc.stderr  # ERROR records still reach the console
    for quiet in ("HF-LIBRARY-WARNING", "PY-WARNING", "RAY-INFO"):
        assert quiet not in console and quiet in log


def test_actor_output_goes_to_the_log_and_its_exception_to_the_console(tmp_path):
    proc = run(ACTORS, tmp_path)
    console, log = proc.stdout + proc.stderr, (tmp_path / "rlsys.log").read_text()
    assert proc.returncode == 1 and "ValueError: ACTOR-FAILS" in proc.stderr, console[-3000:]
    assert "ACTOR-STDOUT" not in console and "ACTOR-STDERR" not in console
    assert "ACTOR-STDOUT" in log and "ACTOR-STDERR" in log
