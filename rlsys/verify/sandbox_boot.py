"""Inside the code sandbox: runs as `python -I -c <judge_wire, judge_steps, judge_program, judge, judge_run .py + this file> SPEC_JSON` with the sandbox dir as cwd.

Standalone (stdlib only, no rlsys import): it is the first process of the sandbox, pid 1 of its
PID namespace when there is one. With its own namespaces it pivots into a jail (enter_jail: only
the system dirs, read-only, the interpreter and its dir, a size-capped tmpfs, are visible; without
the jail, a private /dev/shm and /dev/mqueue), lifts the int/str conversion digit limit (a judge
has none), then:
  * stdin/stdout rows: runs the program once per test case: it forks, points stdin/stdout/stderr
    at that case's files (fds the parent opened), closes every other fd, applies rlimits, a
    Landlock write rule and drops all capabilities, and runs the program (waiting for its non-daemon
    threads, as the interpreter does at exit, before flushing its output). It writes one status line
    per case to its own stdout (128 + signal when a signal ended the program), kills what the case
    left behind, and stops at the first failing case;
  * test-code rows ("judged"): forks the program (confined as above, then serving calls) and the
    judge (confined the same way, running the tests; see judge.py), joined by two pipes; waits
    for the judge, kills the program, and writes two status lines: the judge's, the program's.
When pid 1 exits the kernel kills everything else in the namespace, so nothing outlives the sandbox.
It is not dumpable, so without Landlock a capability-less program still cannot read its fds or memory.
"""

import ctypes
import fcntl
import json
import os
import platform
import resource
import runpy
import sys
import time
import traceback

if "run_judge" not in globals():  # imported as a module (tests), not sent in after judge.py
    from rlsys.verify.judge_run import run_judge
    from rlsys.verify.judge_program import serve_program
    from rlsys.verify.judge_wire import send

# Landlock (Linux >= 5.13): filesystem write rights, by ABI version; network and scope from ABI 4 / 6.
_FS_WRITE = {1: 0b0001111111110010, 2: 0b0011111111110010, 3: 0b0111111111110010}
_NET_TCP = 0b11  # bind + connect
_SCOPE = 0b11  # abstract unix sockets + signals to processes outside the sandbox


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def mount_tmpfs(path: str, size_mb: int, mode: str = "0700") -> bool:
    """Cap the disk the program can fill (we are root of our own user+mount namespace here)."""
    return _libc().mount(b"tmpfs", path.encode(), b"tmpfs", 0, f"size={size_mb}m,mode={mode}".encode()) == 0


# The filesystem the program sees in the jail: these, the interpreter's installation, its own dir.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
DEVICES = ("null", "zero", "full", "random", "urandom")
_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}  # syscall numbers (no glibc wrapper)
_MS_BIND, _MS_REC, _MS_SAFE = 4096, 16384, 2 | 4 | 8  # bind, recursive; nosuid, nodev, noexec
_MS_RDONLY, _MS_REMOUNT, _MS_RELATIME = 1, 32, 1 << 21
# statvfs flags a remount in a user namespace must keep (the kernel locks them): nosuid, nodev,
# noexec, noatime, nodiratime share their MS_ values; ST_RELATIME (4096) is MS_RELATIME.
_ST_KEEP, _ST_RELATIME = 2 | 4 | 8 | 1024 | 2048, 4096


def remount_readonly(path: str) -> bool:
    """Make the bind mount at `path` read-only: without Landlock, a program whose uid owns files
    there (the verifier's own venv, when not run as root) cannot change them for later samples."""
    flags = os.statvfs(path).f_flag
    keep = (flags & _ST_KEEP) | (_MS_RELATIME if flags & _ST_RELATIME else 0)
    return _libc().mount(None, path.encode(), None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | keep, None) == 0


def private_ipc_dirs(workdir: str) -> None:
    """Without the jail (own mount namespace only): fresh, empty /dev/shm (POSIX shared memory and
    semaphores) and /dev/mqueue, gone with the sandbox, so a program cannot leave files there
    for a later sample (writes there are already refused where Landlock is on)."""
    for d in ("/dev/shm", "/dev/mqueue"):
        if os.path.isdir(d) and not os.path.islink(d) and not (workdir + "/").startswith(d + "/"):
            mount_tmpfs(d, 16, "1777")


def lift_int_digits_limit() -> None:
    """Ints of any size convert to and from str, as in a judge without Python's 4300-digit limit."""
    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(0)


def enter_jail(workdir: str, tmpfs_mb: int, program: bytes) -> str | None:
    """Make a fresh root (a small tmpfs over workdir) holding only the system dirs, the Python
    installation, a few devices, a fresh /proc and, at the same path, the program's capped tmpfs
    dir; pivot into it and drop the old root. Nothing else of the host (datasets, the rows being
    scored, home dirs, /tmp) is visible from here on. None on success, else what failed."""
    libc = _libc()
    if not mount_tmpfs(workdir, 16, "0755"):
        return "tmpfs for the new root"
    root = workdir
    binds = [d for d in SYSTEM_DIRS if os.path.isdir(d) and not os.path.islink(d)]
    for d in SYSTEM_DIRS:
        if os.path.islink(d):  # merged /usr: /lib -> usr/lib
            os.symlink(os.readlink(d), root + d)
    pythons = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, os.path.dirname(sys.executable))}
    binds += sorted(p for p in pythons if not any(p == d or p.startswith(d + "/") for d in binds))
    for d in binds:
        os.makedirs(root + d, exist_ok=True)
        if libc.mount(d.encode(), (root + d).encode(), None, _MS_BIND | _MS_REC, None) != 0:
            return f"bind {d}"
        remount_readonly(root + d)  # best effort: Landlock and the uid guard writes too
    os.makedirs(root + "/dev")
    for dev in DEVICES:
        open(f"{root}/dev/{dev}", "w").close()
        if libc.mount(f"/dev/{dev}".encode(), f"{root}/dev/{dev}".encode(), None, _MS_BIND, None) != 0:
            return f"bind /dev/{dev}"
    os.makedirs(root + "/proc")
    if libc.mount(b"proc", f"{root}/proc".encode(), b"proc", _MS_SAFE, None) != 0:
        return "mount /proc"
    os.makedirs(root + workdir)
    if not mount_tmpfs(root + workdir, tmpfs_mb):
        return "the program's tmpfs"
    with open(root + workdir + "/prog.py", "wb") as f:
        f.write(program)
    os.chdir(root)
    nr = _PIVOT_ROOT.get(platform.machine())
    if nr is None or libc.syscall(nr, b".", b".") != 0 or libc.umount2(b".", 2) != 0:  # 2: MNT_DETACH
        return "pivot_root"
    os.chdir(workdir)
    return None


def landlock_writes_only_beneath(path: str) -> int:
    """Allow file writes only beneath `path`, no TCP, no signals out; returns the ABI (0 = unavailable)."""
    libc = _libc()
    abi = libc.syscall(444, None, 0, 1)  # landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)
    if abi < 1:
        return 0
    fs = _FS_WRITE[min(abi, 3)]
    attr = (ctypes.c_uint64 * 3)(fs, _NET_TCP if abi >= 4 else 0, _SCOPE if abi >= 6 else 0)
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    ruleset = libc.syscall(444, ctypes.byref(attr), size, 0)
    if ruleset < 0:
        return 0

    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]

    for p, rights in ((path, fs), ("/dev/null", 0b10 | (1 << 14 if abi >= 3 else 0))):
        fd = os.open(p, os.O_PATH | os.O_CLOEXEC)
        rule = PathBeneath(rights, fd)
        libc.syscall(445, ruleset, 1, ctypes.byref(rule), 0)  # LANDLOCK_RULE_PATH_BENEATH
        os.close(fd)
    libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS: required to self-restrict
    ok = libc.syscall(446, ruleset, 0) == 0  # landlock_restrict_self
    os.close(ruleset)
    return abi if ok else 0


def set_rlimits(lim: dict) -> None:
    cpu = int(lim["cpu_s"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    mem = int(lim["memory_mb"]) << 20
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    out = int(lim["output_bytes"])
    resource.setrlimit(resource.RLIMIT_FSIZE, (out, out))
    resource.setrlimit(resource.RLIMIT_NPROC, (int(lim["max_processes"]), int(lim["max_processes"])))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


def drop_privileges() -> bool:
    """No capabilities, now or after an exec (we are root of our user namespace, the program must
    not be: it could mount over its tmpfs, or trace its siblings)."""
    libc = _libc()
    libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
    for cap in range(64):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP; fails past the last cap (or unprivileged)
            break
    libc.prctl(47, 4, 0, 0, 0)  # PR_CAP_AMBIENT_CLEAR_ALL
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    return libc.capset(header, (ctypes.c_uint32 * 6)()) == 0


def confine(lim: dict, workdir: str, fds: list[int]) -> int:
    """Make fds this process's 0, 1, 2, ... and close all others; rlimits, Landlock, no capabilities.
    0 when done, else an exit status for the failure."""
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 64) for fd in fds]  # dup2 in order cannot clobber a source
    for target, fd in enumerate(high):
        os.dup2(fd, target)
    os.closerange(len(fds), 65536)  # other cases' files and the status pipe stay out of reach
    set_rlimits(lim)
    if lim.get("landlock") and not landlock_writes_only_beneath(workdir):
        print("sandbox: landlock requested but could not be applied", file=sys.stderr)
        return 125
    if not drop_privileges():
        print("sandbox: could not drop capabilities", file=sys.stderr)
        return 125
    return 0


def run_program(lim: dict, workdir: str, fds: list[int], serve: bool = False) -> int:
    """The program as __main__ with fds as stdin/stdout/stderr (and, to serve the judge, the
    request and answer pipes as fds 3 and 4)."""
    failed = confine(lim, workdir, fds)
    if failed:
        return failed
    sys.argv = ["prog.py"]
    names, why = None, None
    try:
        names = runpy.run_path("prog.py", run_name="__main__")
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, (int, type(None))):
            print(e.code, file=sys.stderr)
        why = f"SystemExit({e.code!r}) while loading"
    except BaseException as e:
        tb = e.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != "prog.py":
            tb = tb.tb_next  # the boot's own frames are noise to whoever reads the error
        traceback.print_exception(type(e), e, tb or e.__traceback__)
        code = 1
        why = f"{type(e).__name__} raised while loading"
    if not serve:  # as at interpreter exit: `Thread(target=main).start()` programs print from there
        join_threads()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # stdout closed or over the size limit: the status says enough
            pass
    if serve:
        if names is None:  # tell the judge why there is nothing to call, then end
            from_judge = _safe_recv(3)
            if from_judge is not None:
                _safe_send(4, {"exit": why})
            return code
        serve_program(names, 3, 4)  # never returns
    return code


def join_threads() -> None:
    """Wait for the program's non-daemon threads (and those they start); the sandbox's
    wall-clock limit still ends a program whose threads never finish."""
    import threading

    while True:
        alive = [t for t in threading.enumerate()
                 if t is not threading.current_thread() and not t.daemon and t.is_alive()]
        if not alive:
            return
        for t in alive:
            t.join()


def _safe_recv(fd):
    try:
        return os.read(fd, 1 << 16) or None
    except OSError:
        return None


def _safe_send(fd, obj):
    try:
        send(fd, obj)
    except OSError:
        pass


def judged(lim: dict, workdir: str, spec: dict) -> list[int]:
    """Program and judge as sibling processes; [judge status, program status]."""
    req_r, req_w = os.pipe()
    ans_r, ans_w = os.pipe()
    program = _spawn(lambda: run_program(lim, workdir, [*spec["program"], req_r, ans_w], serve=True))
    judge = _spawn(lambda: confine(lim, workdir, [*spec["judge"], ans_r, req_w])
                   or run_judge(0, 3, 4, 5) or 0)
    for fd in {req_r, req_w, ans_r, ans_w, *spec["program"], *spec["judge"]}:
        os.close(fd)  # only the two children hold them now (the tests stay out of the boot's fds)
    judge_code = _wait(judge)
    program_code = _wait(program, within_s=0.5)  # a program that acknowledged the end exits at once
    if program_code is None:
        os.kill(program, 9)
        program_code = _wait(program)
    return [judge_code, program_code]


def _spawn(fn) -> int:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = fn()
        except BaseException:
            traceback.print_exc()
        os._exit(code if isinstance(code, int) else 1)
    return pid


def _wait(pid: int, within_s: float | None = None) -> int | None:
    """Exit status (128 + signal if killed); None if still running after within_s."""
    deadline = None if within_s is None else time.monotonic() + within_s
    while True:
        done, status = os.waitpid(pid, 0 if deadline is None else os.WNOHANG)
        if done:
            return 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        if time.monotonic() > deadline:
            return None
        time.sleep(0.01)


def kill_leftovers() -> None:
    if os.getpid() == 1:  # init of our PID namespace: kill whatever the run left running
        try:
            os.kill(-1, 9)
            while True:
                os.waitpid(-1, 0)  # reap them: zombies count against the process limit
        except OSError:
            pass


def main() -> None:
    lim = json.loads(sys.argv[1])
    workdir = os.getcwd()
    if lim.get("tmpfs_mb") and os.getpid() == 1:  # own namespaces: give the program a capped tmpfs
        source = open("prog.py", "rb").read()
        if lim.get("jail"):
            failed = enter_jail(workdir, lim["tmpfs_mb"], source)
            if failed:
                print(f"sandbox: filesystem jail failed at: {failed}", file=sys.stderr)
                os._exit(125)
        else:
            private_ipc_dirs(workdir)
            if mount_tmpfs(workdir, lim["tmpfs_mb"]):
                os.chdir(workdir)  # the new mount, not the directory under it
                with open("prog.py", "wb") as f:
                    f.write(source)
    lift_int_digits_limit()  # inherited by the program and the judge (both forked from here)
    _libc().prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0 (inherited): our fds and memory are not the program's
    if lim.get("judged"):
        codes = judged(lim, workdir, lim["judged"])
        os.write(1, "".join(f"{c}\n" for c in codes).encode())
        kill_leftovers()
        os._exit(0)
    for fds in lim["cases"]:
        pid = os.fork()
        if pid == 0:
            os._exit(run_program(lim, workdir, fds))
        code = _wait(pid)
        os.write(1, f"{code}\n".encode())
        kill_leftovers()
        if code != 0:
            break
    os._exit(0)


if __name__ == "__main__":
    main()
