"""Inside the code sandbox: runs as `python -I -c <this file> LIMITS_JSON` with the sandbox dir as cwd.

Standalone (stdlib only, no rlsys import): it is the first process of the sandbox, pid 1 of its
PID namespace when there is one. It mounts a size-capped tmpfs over its dir when it can, then runs
the program once per test case: it forks, points stdin/stdout/stderr at that case's files (fds
the parent opened), closes every other fd, applies rlimits and a Landlock write rule, and runs
the program. It writes one status line per case to its own stdout (128 + signal when a signal
ended the program), kills what the case left behind, and stops at the first failing case. When
pid 1 exits the kernel kills everything else in the namespace, so nothing outlives the sandbox.
"""

import ctypes
import json
import os
import resource
import runpy
import sys
import traceback

# Landlock (Linux >= 5.13): filesystem write rights, by ABI version; network and scope from ABI 4 / 6.
_FS_WRITE = {1: 0b0001111111110010, 2: 0b0011111111110010, 3: 0b0111111111110010}
_NET_TCP = 0b11  # bind + connect
_SCOPE = 0b11  # abstract unix sockets + signals to processes outside the sandbox


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def mount_tmpfs(path: str, size_mb: int) -> bool:
    """Cap the disk the program can fill (we are root of our own user+mount namespace here)."""
    return _libc().mount(b"tmpfs", path.encode(), b"tmpfs", 0, f"size={size_mb}m,mode=0700".encode()) == 0


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


def run_program(lim: dict, workdir: str, fds: list[int]) -> int:
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    os.closerange(3, 65536)  # other cases' files and the status pipe stay out of reach
    set_rlimits(lim)
    if lim.get("landlock") and not landlock_writes_only_beneath(workdir):
        print("sandbox: landlock requested but could not be applied", file=sys.stderr)
        return 125
    sys.argv = ["prog.py"]
    try:
        runpy.run_path("prog.py", run_name="__main__")
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, (int, type(None))):
            print(e.code, file=sys.stderr)
    except BaseException as e:
        tb = e.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != "prog.py":
            tb = tb.tb_next  # the boot's own frames are noise to whoever reads the error
        traceback.print_exception(type(e), e, tb or e.__traceback__)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # stdout closed or over the size limit: the status says enough
            pass
    return code


def main() -> None:
    lim = json.loads(sys.argv[1])
    workdir = os.getcwd()
    if lim.get("tmpfs_mb") and os.getpid() == 1:  # own namespaces: give the program a capped tmpfs
        source = open("prog.py", "rb").read()
        if mount_tmpfs(workdir, lim["tmpfs_mb"]):
            os.chdir(workdir)  # the new mount, not the directory under it
            with open("prog.py", "wb") as f:
                f.write(source)
    for fds in lim["cases"]:
        pid = os.fork()
        if pid == 0:
            os._exit(run_program(lim, workdir, fds))
        _, status = os.waitpid(pid, 0)
        code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        os.write(1, f"{code}\n".encode())
        if os.getpid() == 1:  # init of our PID namespace: kill whatever the case left running
            try:
                os.kill(-1, 9)
                while True:
                    os.waitpid(-1, 0)  # reap them: zombies count against the process limit
            except OSError:
                pass
        if code != 0:
            break
    os._exit(0)


if __name__ == "__main__":
    main()
