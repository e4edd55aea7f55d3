"""Run an untrusted Python program in a sandboxed subprocess: always ends, within its wall time.

Layers (each used where the OS allows; `isolation()` says which are on here):
  * a fresh temp dir as cwd, an empty environment (PATH, LANG, HOME=the dir): no inherited secrets;
  * its own session / process group, killed as a whole on timeout and after every run;
  * Linux namespaces via `unshare`: user (mapped root, no real privileges), network (no interfaces
    but a down loopback: network off; abstract unix sockets are per network namespace), PID (the
    program cannot see or signal other processes, and the kernel kills all of its processes when
    the sandbox's first process exits) and mount (a fresh /proc, so /proc/<parent>/environ does not
    exist; a size-capped tmpfs as its dir); where the kernel allows (each probed), IPC (SysV message
    queues, semaphores, shared memory and POSIX message queues are the sandbox's own and die with
    it: a sample cannot leave any for a later one), UTS (hostname) and cgroup (its cgroup view);
  * with those namespaces, a filesystem jail: only the system dirs (read-only), the interpreter's
    installation and its dir are visible (datasets and the rows being scored are not);
  * no capabilities (even as root of its user namespace), and a boot that is not dumpable;
  * when the parent runs as root, the program runs as an unprivileged uid (nobody), so the
    process-count rlimit applies and files of other users stay unwritable;
  * Landlock: file writes only beneath its dir, no TCP bind/connect, no signals to outside;
  * rlimits: CPU seconds, address space, file size (also caps stdout/stderr, which go to files),
    process count, open files, no core dumps.
stdout/stderr are files, not pipes, so a program that closes stdout and sleeps cannot hang the
reader: the wall-clock timeout always holds. run_judged() runs test code in a judge process
beside the program (judge.py). Not isolated: reads of world-readable system files (all of them
without the jail), CPU and memory bandwidth shared with the host, kernel bugs. See docs/verifiers.md.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

# Passed with -c (no file the sandbox uid must reach): the judge's code, then the boot that uses it.
BOOT_FILES = ("judge_wire.py", "judge_steps.py", "judge_program.py", "judge.py", "judge_run.py", "sandbox_boot.py")
BOOT = "\n\n".join(Path(__file__).with_name(f).read_text() for f in BOOT_FILES)
# The sandbox dies with the process that started it (its namespaces and everything in them too).
PDEATHSIG = ["setpriv", "--pdeathsig", "KILL"] if shutil.which("setpriv") else []
UNSHARE = ["unshare", "--user", "--map-root-user", "--net", "--pid", "--fork", "--kill-child", "--mount-proc"]
UNSHARED = ["user", "network", "pid", "mount"]
# Also unshared where the kernel allows (probed one by one if not all at once): without them a
# sample's SysV IPC objects or POSIX message queues would outlive it and reach later samples.
MORE_NAMESPACES = {"--ipc": "ipc", "--uts": "uts", "--cgroup": "cgroup"}
NOBODY = 65534
TMPFS_MB = 64  # disk the program may fill inside its dir (when it has its own mount namespace)
SAFE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


@dataclass
class Limits:
    wall_s: float = 10.0  # wall-clock time; the whole sandbox is killed after it
    memory_mb: int = 1024  # address space
    output_bytes: int = 1 << 20  # any file, stdout and stderr each
    max_processes: int = 32  # processes/threads at once (enforced as a non-root uid)


@dataclass
class Result:
    ok: bool  # exited with status 0 in time
    reason: str  # "ok", "timeout", "output limit", "memory limit", "cpu time limit", "runtime error: ..."
    returncode: int | None
    stdout: str
    stderr: str  # the tail
    seconds: float  # of the whole sandbox (all runs)


_isolation: dict | None = None
_lock = threading.Lock()


def isolation() -> dict:
    """Which layers work on this machine, probed once per process: the first combination of
    (unprivileged uid, interpreter, namespaces) that can start Python, strongest first."""
    global _isolation
    with _lock:
        if _isolation is None:
            _isolation = _probe()
        return _isolation


def _probe() -> dict:
    system_python = shutil.which("python3", path=SAFE_ENV["PATH"])
    # The interpreter must be reachable by the sandbox's uid (a venv under /root is not for nobody).
    pythons = list(dict.fromkeys(p for p in (sys.executable, system_python) if p))
    uids = [NOBODY, None] if os.geteuid() == 0 else [None]
    for uid in uids:
        for python in pythons:
            unshare = _namespaces(python, uid) if shutil.which("unshare") else None
            if unshare is not None or _starts([python], uid):
                unshare = unshare or []
                return {"python": python, "namespaces": bool(unshare), "unshare": unshare,
                        "unshared": [*UNSHARED, *(MORE_NAMESPACES[f] for f in unshare if f in MORE_NAMESPACES)]
                        if unshare else [],
                        "uid": uid, "landlock_abi": _landlock_abi(), "boot": _boot_launcher(python, uid),
                        "jail": bool(unshare) and _jail_works(python, uid, unshare)}
    raise RuntimeError(f"code sandbox: cannot start any of {pythons}")


def _boot_launcher(python: str, uid: int | None) -> str:
    """The `-c` code that starts the boot: an import of BOOT compiled once per process (its .pyc,
    written by this process with the sandbox's interpreter, in a dir the sandbox uid can read but
    not write), which saves compiling ~1400 lines per sample; BOOT itself where that fails."""
    where = tempfile.mkdtemp(prefix="rlsys-boot-")
    atexit.register(shutil.rmtree, where, True)
    try:
        os.chmod(where, 0o755)
        (Path(where) / "rlsys_sandbox_boot.py").write_text(BOOT)
        subprocess.run([python, "-I", "-m", "py_compile", f"{where}/rlsys_sandbox_boot.py"], env=SAFE_ENV,
                       check=True, capture_output=True, timeout=60)
        load = f"import sys; sys.path.insert(0, {where!r}); import rlsys_sandbox_boot"
        return f"{load}; rlsys_sandbox_boot.main()" if _starts([python], uid, load) else BOOT  # its uid can import it
    except (OSError, subprocess.SubprocessError):
        return BOOT


def _starts(cmd: list[str], uid: int | None, code: str = "pass") -> bool:
    """Whether `cmd` (ending with an interpreter) starts Python here and runs `code`."""
    try:
        return subprocess.run([*PDEATHSIG, *cmd, "-I", "-c", code], env=SAFE_ENV, cwd="/", capture_output=True,
                              timeout=30, **_as_user(uid)).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _namespaces(python: str, uid: int | None) -> list[str] | None:
    """The unshare command to use: all namespaces if the kernel allows, else the base ones and
    whichever of MORE_NAMESPACES work with them; None without the base ones."""
    full = [*UNSHARE, *MORE_NAMESPACES]
    if _starts([*full, python], uid):
        return full
    if not _starts([*UNSHARE, python], uid):
        return None
    more = [f for f in MORE_NAMESPACES if _starts([*UNSHARE, f, python], uid)]
    return [*UNSHARE, *more] if more and _starts([*UNSHARE, *more, python], uid) else list(UNSHARE)


def _jail_works(python: str, uid: int | None, unshare: list[str]) -> bool:
    """Whether the boot can pivot into its filesystem jail here (mounts allowed in the namespace)."""
    workdir = tempfile.mkdtemp(prefix="rlsys-sandbox-")
    try:
        (Path(workdir) / "prog.py").write_text("")
        if uid is not None:
            os.chown(workdir, uid, uid)
        spec = {"tmpfs_mb": TMPFS_MB, "jail": True, "cases": []}
        cmd = [*PDEATHSIG, *unshare, python, "-I", "-c", BOOT, json.dumps(spec)]
        return subprocess.run(cmd, env=SAFE_ENV, cwd=workdir, capture_output=True, timeout=30,
                              **_as_user(uid)).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _as_user(uid: int | None) -> dict:
    return {} if uid is None else {"user": uid, "group": uid, "extra_groups": []}


def _landlock_abi() -> int:
    import ctypes

    try:
        return max(0, ctypes.CDLL(None, use_errno=True).syscall(444, None, 0, 1))
    except (OSError, AttributeError):
        return 0


def run_python(program: str, stdin: str = "", limits: Limits | None = None) -> Result:
    """Run `program` (Python source) once with `stdin`; never raises for anything the program does."""
    return run_cases(program, [stdin], limits)[0]


def run_cases(program: str, stdins: list[str], limits: Limits | None = None) -> list[Result]:
    """Run `program` once per stdin in one sandbox (its start-up is paid once), in order, stopping
    at the first run that fails; `limits.wall_s` bounds all runs together. One Result per run that
    happened (the last one says why it stopped)."""
    lim = limits or Limits()
    files = [_files(stdin.encode(), 3) for stdin in stdins]  # stdin, stdout, stderr of each run
    try:
        run = _launch(program, {"cases": [[f.fileno() for f in trio] for trio in files]},
                      [f for trio in files for f in trio], lim)
        results = []
        for k, (_, fout, ferr) in enumerate(files):
            results.append(_result(run, k, fout, ferr, lim))
            if not results[-1].ok:
                break
        return results
    finally:
        _close(files)


@dataclass
class JudgedRun:
    """A test-code run (see judge.py): what the judge reported, and how each side ended."""
    report: str  # the judge's JSON lines
    program: Result  # how the program process ended, its stdout and stderr
    judge: Result  # how the judge process ended; its stdout+stderr (the test code's prints, tracebacks)
    timed_out: bool


def run_judged(program: str, judge_input: str, limits: Limits | None = None) -> JudgedRun:
    """Run `program` as a server for the judge, which reads `judge_input` (never written into the
    sandbox dir nor visible to the program) and writes a report; `limits.wall_s` bounds both."""
    lim = limits or Limits()
    prog = _files(b"", 3)  # stdin, stdout, stderr
    judge_in, judge_log, report = _files(judge_input.encode(), 3)
    try:
        spec = {"judged": {"program": [f.fileno() for f in prog],
                           "judge": [judge_in.fileno(), judge_log.fileno(), judge_log.fileno(), report.fileno()]}}
        run = _launch(program, spec, [*prog, judge_in, judge_log, report], lim)
        return JudgedRun(_read(report, 16 << 20), _result(run, 1, prog[1], prog[2], lim),
                         _result(run, 0, judge_log, judge_log, lim), run["timed_out"])
    finally:
        _close([prog, [judge_in, judge_log, report]])


def _files(first: bytes, n: int) -> list:
    """n parent-owned temp files (passed to the sandbox as fds, never as paths), the first holding `first`."""
    files = [tempfile.TemporaryFile() for _ in range(n)]
    files[0].write(first)
    files[0].seek(0)
    return files


def _close(groups) -> None:
    for group in groups:
        for f in group:
            f.close()


def _launch(program: str, spec: dict, files: list, lim: Limits) -> dict:
    """Start the sandbox with the boot `spec`, wait for it within lim.wall_s, kill all of it;
    {"codes": status lines, "timed_out", "boot_error", "returncode", "seconds"}."""
    iso = isolation()
    workdir = tempfile.mkdtemp(prefix="rlsys-sandbox-")
    t0 = time.perf_counter()
    try:
        (Path(workdir) / "prog.py").write_text(program)
        if iso["uid"] is not None:
            os.chown(workdir, iso["uid"], iso["uid"])
        boot = {"cpu_s": int(lim.wall_s) + 1, "memory_mb": lim.memory_mb, "output_bytes": lim.output_bytes,
                "max_processes": lim.max_processes + 1, "landlock": iso["landlock_abi"] > 0,
                "tmpfs_mb": TMPFS_MB if iso["namespaces"] else 0, "jail": iso.get("jail", False), **spec}
        cmd = [*PDEATHSIG, *iso["unshare"], iso["python"], "-I", "-c", iso["boot"], json.dumps(boot)]
        with tempfile.TemporaryFile() as status, tempfile.TemporaryFile() as boot_err:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=status, stderr=boot_err, cwd=workdir,
                                    env={**SAFE_ENV, "HOME": workdir}, start_new_session=True,
                                    pass_fds=sorted({f.fileno() for f in files}), **_as_user(iso["uid"]))
            try:
                proc.wait(timeout=lim.wall_s)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
            _kill_group(proc)
            return {"codes": [int(x) for x in _read(status, 1 << 16).split()], "timed_out": timed_out,
                    "boot_error": _read(boot_err, 4000), "returncode": proc.returncode,
                    "seconds": time.perf_counter() - t0}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _result(run: dict, k: int, fout, ferr, lim: Limits) -> Result:
    """Result of the k-th status line of a run, with its output files."""
    if k < len(run["codes"]):
        rc, late = run["codes"][k], False
    else:  # timed out, or the sandbox itself failed before this run: say so, never pass
        rc, late = None, run["timed_out"]
    out, err = _read(fout, lim.output_bytes), _read(ferr, 4000)
    over = max(_size(fout), _size(ferr)) >= lim.output_bytes
    failed = run["boot_error"].strip()[-300:] or f"exit status {run['returncode']}"
    reason = _reason(rc, late, err, over, lim) if (rc is not None or late) else f"sandbox failed: {failed}"
    return Result(reason == "ok", reason, rc, out, err[-2000:], run["seconds"])


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # also whatever it left behind in its group
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _read(f, limit: int) -> str:
    f.seek(0)
    return f.read(limit).decode("utf-8", errors="replace")


def _size(f) -> int:
    return os.fstat(f.fileno()).st_size


def _reason(rc: int, timed_out: bool, err: str, over_output: bool, lim: Limits) -> str:
    if timed_out:
        return f"timeout: still running after {lim.wall_s:.1f}s (killed)"
    if over_output or "File too large" in err or rc == 128 + signal.SIGXFSZ:
        return f"output limit: wrote more than {lim.output_bytes} bytes"
    if rc in (128 + signal.SIGXCPU, 128 + signal.SIGKILL):
        return "cpu time limit (killed)"
    if "MemoryError" in err:
        return f"memory limit: more than {lim.memory_mb} MB"
    if rc == 0:
        return "ok"
    last = [line for line in err.strip().splitlines() if line.strip()]
    if rc > 128:
        return f"killed by signal {signal.Signals(rc - 128).name}" if rc - 128 in signal.Signals._value2member_map_ \
            else f"exit status {rc}"
    return f"runtime error: {last[-1][:300]}" if last else f"exit status {rc}"
