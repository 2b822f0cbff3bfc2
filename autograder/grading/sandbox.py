"""Run one student's Jupyter kernel in a sandbox.

Process tree for one kernel (``namespace`` mode)::

    nbgrader worker (root, private 0700 course dir)
      └─ W  ``python -I -m autograder.grading.sandbox wrap CONFIG CONNFILE``   (root; what jupyter_client starts)
           └─ I  pid 1 of fresh PID/mount/net/IPC/UTS namespaces     (root; reaper, forwards signals)
                └─ K  the ipykernel, unprivileged sandbox user          (setuid + rlimits + no_new_privs)

W joins the per-student cgroups, copies the connection file into the box, creates the namespaces
and forwards SIGINT/SIGTERM (kernel interrupts) to I, which forwards them to K.  If W is killed
(jupyter_client's hard kill) I gets SIGKILL through PR_SET_PDEATHSIG, and when I (PID 1) dies the
kernel SIGKILLs every process left in the namespace: fork bombs and daemonised children cannot
outlive the kernel.

I builds a new root filesystem on a tmpfs that contains, read-only, only what a kernel needs
(``/usr``, ``/etc``, the Python installation, the virtualenv, the course packages, the data
cache) plus a private ``/tmp``, ``/dev/shm``, work directory and home (size-limited tmpfs) and the
box's ``run`` directory (connection file + ZeroMQ ``ipc://`` sockets, the only host directory the
kernel can write).  It then ``pivot_root``s into it, so the course directory, ``solutions/``, the
gradebook, ``.git``, other students' submissions and results simply do not exist for the kernel.
The new network namespace has only a loopback interface: no network.  Kernel <-> nbgrader traffic
goes over Unix sockets in the ``run`` directory (ZeroMQ ``ipc`` transport), which work across
network namespaces.

Weaker modes (chosen automatically when a stronger one does not work here, and reported):
``user`` = setuid to the sandbox user + rlimits + file permissions, no namespaces;
``none`` = rlimits only, the kernel runs as the calling user (not root => no isolation at all).
"""
from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import platform
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys

MODES = ("namespace", "user", "none")

# --- Linux constants ---------------------------------------------------------------------------
CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 1, 4, 38
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "arm64": 41}.get(platform.machine())

SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
DEVICES = ("null", "zero", "full", "random", "urandom")
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                     signal.SIGUSR2)

_libc = None


def _lib():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                                ctypes.c_char_p]
        _libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        _libc.unshare.argtypes = [ctypes.c_int]
        _libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                                ctypes.c_ulong]
        _libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    return _libc


def _check(result, what):
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _b(path):
    return None if path is None else os.fsencode(path)


def mount(source, target, fstype=None, flags=0, data=None):
    """mount(2); raises OSError."""
    _check(_lib().mount(_b(source), _b(target), _b(fstype), flags, _b(data)),
           f"mount {source} -> {target}")


def prctl(option, arg2=0):
    """prctl(2); raises OSError."""
    _check(_lib().prctl(option, arg2, 0, 0, 0), f"prctl({option})")


# --- what the kernel may see ---------------------------------------------------------------------

def readonly_paths(course_packages=("mflib", "autograder"), extra=()) -> list[str]:
    """Host paths bind-mounted read-only into the kernel's root (namespace mode)."""
    import importlib.util

    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             os.path.dirname(os.path.realpath(sys.executable))}
    for name in course_packages:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            continue
        if spec.submodule_search_locations:
            paths.update(os.path.realpath(p) for p in spec.submodule_search_locations)
        elif spec.origin:
            paths.add(os.path.realpath(spec.origin))
    paths.update(os.path.realpath(p) for p in extra)
    out = []
    for p in sorted(paths):
        if not p or not os.path.exists(p) or p == "/":
            continue
        if any(p == q or p.startswith(q.rstrip("/") + "/") for q in SYSTEM_PATHS):
            continue
        out.append(p)
    # drop paths nested in another exposed path
    return [p for p in out if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in out)]


# --- W: the wrapper that jupyter_client starts ---------------------------------------------------

def _write_file(path, text, uid=None, gid=None, mode=0o600):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    if uid is not None:
        os.chown(path, uid, gid)


def wrap_main(argv: list[str]) -> int:
    """W: join the cgroups, copy the connection file, unshare, fork I; return the kernel's exit status."""
    config_path = argv[0]
    connection_file = argv[1] if len(argv) > 1 else None
    with open(config_path) as f:
        cfg = json.load(f)
    os.chdir("/")
    os.umask(0o077)
    if cfg.get("pidfile"):
        _write_file(cfg["pidfile"], str(os.getpid()))
    for procs in cfg.get("cgroup_procs", []):
        try:
            with open(procs, "w") as f:
                f.write(str(os.getpid()))
        except OSError as e:
            print(f"autograder sandbox: cannot join cgroup {procs}: {e}", file=sys.stderr)
            return 126
    uid, gid = cfg.get("uid"), cfg.get("gid")
    argv_k = list(cfg["argv"])
    if connection_file is not None:
        # the kernel user cannot read jupyter_client's 0600 root-owned connection file: copy it
        with open(connection_file) as f:
            conn = f.read()
        copy = os.path.join(cfg["run_dir"], "connection.json")
        _write_file(copy, conn, uid, gid)
        argv_k = [a.replace("{connection_file}", copy) for a in argv_k]
    mode = cfg["mode"]
    if mode == "namespace":
        try:
            _check(_lib().unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC
                                  | CLONE_NEWUTS), "unshare")
        except OSError as e:
            print(f"autograder sandbox: {e}", file=sys.stderr)
            return 126
    parent_pid = os.getpid()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            _init_main(cfg, argv_k, parent_pid, w)
        except BaseException as e:  # noqa: BLE001 - report and die, never run unsandboxed
            try:  # the report is best effort; whatever it raises, this process ends here
                os.write(w, f"{type(e).__name__}: {e}".encode()[:2000])
            finally:
                os._exit(126)
        os._exit(126)
    os.close(w)
    _forward_signals_to(pid)
    status = _wait_for(pid)
    # a setup failure message from I (empty if the kernel exec'd)
    msg = os.read(r, 4096)
    if msg:
        print(f"autograder sandbox setup failed: {msg.decode(errors='replace')}", file=sys.stderr)
    return status


def _forward_signals_to(pid):
    def forward(signum, _frame):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    for s in FORWARDED_SIGNALS:
        signal.signal(s, forward)


def _wait_for(pid) -> int:
    while True:
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return 0
        if os.WIFEXITED(status):
            return os.WEXITSTATUS(status)
        if os.WIFSIGNALED(status):
            return 128 + os.WTERMSIG(status)


def _init_main(cfg, argv_k, parent_pid, report_fd):
    """I: runs as root; in namespace mode it is PID 1 of the new PID namespace."""
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if cfg["mode"] == "namespace":
        if os.getppid() not in (0, parent_pid):  # W died before we set PDEATHSIG
            os._exit(1)
        os.umask(0o022)  # skeleton directories of the new root must be traversable
        _build_root(cfg)
        os.umask(0o077)
        with contextlib.suppress(OSError):
            name = b"sandbox"
            _lib().sethostname(name, len(name))
        with contextlib.suppress(OSError):
            _loopback_up()
    elif os.getppid() != parent_pid:
        os._exit(1)
    os.setsid()
    fcntl.fcntl(report_fd, fcntl.F_SETFD, fcntl.FD_CLOEXEC)
    kernel = os.fork()
    if kernel == 0:
        try:
            _exec_kernel(cfg, argv_k, report_fd)
        except BaseException as e:  # noqa: BLE001 - report and die, never run unsandboxed
            try:  # the report is best effort; whatever it raises, this process ends here
                os.write(report_fd, f"{type(e).__name__}: {e}".encode()[:2000])
            finally:
                os._exit(126)
    os.close(report_fd)
    _forward_signals_to(kernel)
    # reap everything (we are PID 1 of the namespace); leave when the kernel is gone, which makes
    # the kernel SIGKILL all remaining processes of the namespace
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(0)
        if pid == kernel:
            if os.WIFEXITED(status):
                os._exit(os.WEXITSTATUS(status))
            os._exit(128 + os.WTERMSIG(status))


def _mkdirs(path, mode=0o755):
    os.makedirs(path, mode=mode, exist_ok=True)


def _bind(src, dst, readonly=True, device=False):
    if os.path.isdir(src):
        _mkdirs(dst)
    else:
        _mkdirs(os.path.dirname(dst))
        if not os.path.exists(dst):
            open(dst, "a").close()
    mount(src, dst, None, MS_BIND | MS_REC)
    if device:  # keep the source mount's flags (a nodev remount would make the device unusable)
        return
    flags = MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV
    if readonly:
        flags |= MS_RDONLY
    mount(None, dst, None, flags)


def _tmpfs(dst, size_mb, mode="0755", uid=0, gid=0):
    _mkdirs(dst)
    mount("tmpfs", dst, "tmpfs", MS_NOSUID | MS_NODEV,
          f"size={int(size_mb)}m,mode={mode},uid={uid},gid={gid}")


def _copy_tree_owned(src, dst, uid, gid):
    if not src or not os.path.isdir(src):
        return
    for dirpath, _dirnames, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        target = dst if rel == "." else os.path.join(dst, rel)
        if rel != ".":
            os.makedirs(target, exist_ok=True)
            os.chown(target, uid, gid)
        for name in filenames:
            s, d = os.path.join(dirpath, name), os.path.join(target, name)
            if os.path.islink(s):
                continue
            shutil.copyfile(s, d)
            os.chmod(d, 0o600 if not os.access(s, os.X_OK) else 0o700)
            os.chown(d, uid, gid)


def _build_root(cfg):
    limits = cfg["limits"]
    uid, gid = cfg["uid"], cfg["gid"]
    new = cfg["root_dir"]
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("tmpfs", new, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,mode=0755")
    for p in SYSTEM_PATHS:
        if os.path.islink(p):
            os.symlink(os.readlink(p), new + p)
        elif os.path.isdir(p):
            _bind(p, new + p)
    # a private /tmp first, so that course paths that live under /tmp (a clone in /tmp, a venv made by
    # CI there) are bound on top of it instead of being hidden by it
    _tmpfs(new + "/tmp", limits["tmp_mb"], "1777")
    for p in cfg["ro_paths"]:
        _bind(p, new + p)
    _hide(cfg.get("hidden_paths", ()), new, cfg["box"])
    # /dev: a few harmless character devices
    _tmpfs(new + "/dev", 1)
    for d in DEVICES:
        _bind("/dev/" + d, new + "/dev/" + d, readonly=False, device=True)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{new}/dev/{name}")
    _tmpfs(new + "/dev/shm", limits["tmp_mb"], "1777")
    _mkdirs(new + "/proc")
    mount("proc", new + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    # the box: run dir shared with the host (sockets), work + home private tmpfs seeded from host
    box = cfg["box"]
    _mkdirs(new + box, 0o711)
    _bind(cfg["run_dir"], new + cfg["run_dir"], readonly=False)
    _tmpfs(new + cfg["work_dir"], limits["work_mb"], "0700", uid, gid)
    _copy_tree_owned(cfg.get("seed_work"), new + cfg["work_dir"], uid, gid)
    _tmpfs(new + cfg["home_dir"], limits["home_mb"], "0700", uid, gid)
    _copy_tree_owned(cfg.get("seed_home"), new + cfg["home_dir"], uid, gid)
    # switch root and forget the old one
    old = new + "/.oldroot"
    _mkdirs(old, 0o700)
    if SYS_PIVOT_ROOT is not None:
        _check(_lib().syscall(SYS_PIVOT_ROOT, _b(new), _b(old)), "pivot_root")
        os.chdir("/")
        _check(_lib().umount2(b"/.oldroot", MNT_DETACH), "umount old root")
        os.rmdir("/.oldroot")
    else:  # unknown architecture: chroot (the kernel has no capabilities, so it cannot escape)
        os.chroot(new)
        os.chdir("/")
    mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _hide(paths, new, box):
    """Cover each host path in ``paths`` (inside a read-only bind) in the new root: a file by an empty
    read-only file, a folder by an empty read-only tmpfs (the reference solutions, see
    :func:`autograder.grading.replay.hidden_paths`)."""
    empty = os.path.join(box, "empty")
    for p in paths:
        dst = new + p
        if os.path.islink(dst) or not os.path.lexists(dst):
            continue
        if os.path.isdir(dst):
            mount("tmpfs", dst, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0555")
            mount(None, dst, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
        else:
            if not os.path.exists(empty):
                _write_file(empty, "", mode=0o444)
            mount(empty, dst, None, MS_BIND)
            mount(None, dst, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _loopback_up():
    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        ifr = struct.pack("16sh22x", b"lo", 0)
        flags = struct.unpack("16sh22x", fcntl.ioctl(s, SIOCGIFFLAGS, ifr))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", flags | IFF_UP))
    finally:
        s.close()


def _exec_kernel(cfg, argv_k, report_fd=None):
    limits = cfg["limits"]
    uid, gid = cfg.get("uid"), cfg.get("gid")
    os.setsid()
    mb = 1024 * 1024

    def setlim(which, value):
        if value is None:
            return
        soft, hard = (value, value) if not isinstance(value, tuple) else value
        cur_soft, cur_hard = resource.getrlimit(which)
        if cur_hard != resource.RLIM_INFINITY and os.geteuid() != 0:
            hard = min(hard, cur_hard)
            soft = min(soft, hard)
        resource.setrlimit(which, (soft, hard))

    setlim(resource.RLIMIT_AS, limits["memory_mb"] * mb)
    setlim(resource.RLIMIT_FSIZE, limits["fsize_mb"] * mb)
    setlim(resource.RLIMIT_CORE, 0)
    setlim(resource.RLIMIT_NOFILE, limits.get("nofile", 1024))
    if limits.get("cpu_s"):
        setlim(resource.RLIMIT_CPU, (int(limits["cpu_s"]), int(limits["cpu_s"]) + 5))
    if uid is not None:  # NPROC counts per uid: only meaningful for a dedicated user
        setlim(resource.RLIMIT_NPROC, limits["nproc"])
    # stdio: nothing from the parent; stdout/stderr of the process go to a size-limited log
    log = os.path.join(cfg["run_dir"], "kernel.log")
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    if uid is not None:
        os.fchown(fd, uid, gid)
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    if uid is not None and os.geteuid() == 0:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
        if os.getuid() != uid or os.geteuid() != uid or os.getgid() != gid:
            raise RuntimeError("could not drop privileges")
        with contextlib.suppress(PermissionError):
            os.setuid(0)
            raise RuntimeError("privileges were not dropped")
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # credentials changed: set again
    os.chdir(cfg["work_dir"])
    keep = report_fd if report_fd is not None else 2  # close-on-exec: reports exec failures
    os.closerange(3, keep)
    os.closerange(max(keep + 1, 3), 65536)
    os.umask(0o077)
    os.execve(argv_k[0], argv_k, cfg["env"])


# --- probing what works here ---------------------------------------------------------------------

PROBE_CODE = r"""
import json, os, socket
out = {"uid": os.getuid(), "euid": os.geteuid(), "pid": os.getpid(), "cwd": os.getcwd()}
def can_read(p):
    try:
        with open(p, "rb") as f:
            f.read(1)
        return True
    except OSError:
        return False
out["canary_readable"] = can_read(os.environ.get("MF_PROBE_CANARY", "/nonexistent"))
try:
    s = socket.create_connection(("1.1.1.1", 53), timeout=1.5); s.close(); out["network"] = True
except OSError as e:
    out["network"] = False; out["network_error"] = str(e)
try:
    import numpy, ipykernel  # the kernel needs these
    out["imports"] = True
except Exception as e:
    out["imports"] = False; out["import_error"] = repr(e)
print("PROBE" + json.dumps(out))
"""


def run_wrapped(cfg_path: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run the wrapper on ``cfg_path`` without a connection file (the sandbox probe)."""
    return subprocess.run([sys.executable, "-I", "-m", "autograder.grading.sandbox", "wrap", cfg_path],
                          capture_output=True, text=True, timeout=timeout, cwd="/")


def main(argv=None) -> int:
    """``python -m autograder.grading.sandbox wrap CONFIG [CONNECTION_FILE]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "wrap":
        return wrap_main(argv[1:])
    print("usage: python -m autograder.grading.sandbox wrap CONFIG [CONNECTION_FILE]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
