"""Confinement of the decoder zygote: no network namespace of the host, a seccomp deny-list.

`PreparedConfinement()` is built in the supervisor before the fork (libc loaded, the BPF program
assembled), so the forked zygote only makes system calls:
- `isolate_network()` (still root, before the privilege drop): `unshare(CLONE_NEWNET)`, a new
  network namespace with no interface but a downed loopback. Refused where the caller may not
  create namespaces (a non-root fallback, or the image's seccomp profile, which refuses
  `unshare`): then it returns False and the seccomp filter alone keeps the decoder off the
  network.
- `apply_seccomp()` (after the drop): PR_SET_NO_NEW_PRIVS, then a filter every later thread and
  fork inherits. It answers EPERM to sockets, exec, ptrace, mounts, namespaces (unshare, setns,
  clone with a namespace flag; clone3 gets ENOSYS so the C library falls back to clone), module
  and kexec loading, bpf, perf events, keyrings, io_uring, userfaultfd, process_vm_* and
  handle-based opens; a system call of another architecture ABI (x32, i386 on x86_64) is killed.
SECURITY: a decoder exploit (Pillow, lcms, OpenCV, pydicom) gets a process that cannot open a
socket, start a program or enter another namespace; never loosens anything once applied. Fails
closed: an unknown architecture or a filter the kernel refuses raises OSError in the zygote,
which then never serves (the import stops with ConfigError, exit 2).
"""

from __future__ import annotations

import ctypes
import errno
import platform
import struct

__all__ = ["DENIED_SYSCALLS", "PreparedConfinement", "program_bytes"]

# linux/sched.h
_CLONE_NEWNET = 0x40000000
_NAMESPACE_FLAGS = (0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000
                    | 0x20000000 | 0x40000000 | 0x00000080)  # NS, CGROUP, UTS, IPC, USER, PID, NET, TIME
# linux/prctl.h, linux/seccomp.h, linux/filter.h, linux/audit.h
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
_RET_KILL_PROCESS = 0x80000000
_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE_K = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_JSET_K = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_RET_K = 0x06  # BPF_RET | BPF_K
_OFF_NR, _OFF_ARCH, _OFF_ARG0 = 0, 4, 16  # struct seccomp_data (arg0: low 32 bits, LE)

# System call numbers (asm/unistd_64.h for x86_64, asm-generic/unistd.h for aarch64).
DENIED_SYSCALLS: dict[str, dict[str, int]] = {
    "x86_64": {"socket": 41, "socketpair": 53, "connect": 42, "bind": 49, "listen": 50,
               "accept": 43, "accept4": 288, "execve": 59, "execveat": 322, "ptrace": 101,
               "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161,
               "unshare": 272, "setns": 308, "bpf": 321, "keyctl": 250, "add_key": 248,
               "request_key": 249, "init_module": 175, "finit_module": 313,
               "delete_module": 176, "kexec_load": 246, "kexec_file_load": 320,
               "process_vm_readv": 310, "process_vm_writev": 311, "perf_event_open": 298,
               "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426,
               "io_uring_register": 427, "open_by_handle_at": 304, "open_tree": 428,
               "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
               "fspick": 433},
    "aarch64": {"socket": 198, "socketpair": 199, "connect": 203, "bind": 200, "listen": 201,
                "accept": 202, "accept4": 242, "execve": 221, "execveat": 281, "ptrace": 117,
                "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51, "unshare": 97,
                "setns": 268, "bpf": 280, "keyctl": 219, "add_key": 217, "request_key": 218,
                "init_module": 105, "finit_module": 273, "delete_module": 106,
                "kexec_load": 104, "kexec_file_load": 294, "process_vm_readv": 270,
                "process_vm_writev": 271, "perf_event_open": 241, "userfaultfd": 282,
                "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
                "open_by_handle_at": 265, "open_tree": 428, "move_mount": 429, "fsopen": 430,
                "fsconfig": 431, "fsmount": 432, "fspick": 433},
}
_CLONE = {"x86_64": 56, "aarch64": 220}
_CLONE3 = 435
_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_X32_SYSCALL_BIT = 0x40000000  # x86_64 only: x32 ABI numbers


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                ("k", ctypes.c_uint)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def _program(arch: str) -> list[tuple[int, int, int, int]]:
    """The filter as (code, jt, jf, k) instructions; jumps are relative to the next one."""
    denied = sorted(DENIED_SYSCALLS[arch].values())
    eperm = _RET_ERRNO | errno.EPERM
    prog: list[tuple[int, int, int, int]] = [
        (_LD_W_ABS, 0, 0, _OFF_ARCH),
        (_JEQ_K, 1, 0, _AUDIT_ARCH[arch]),
        (_RET_K, 0, 0, _RET_KILL_PROCESS),  # another ABI's numbers mean other calls
        (_LD_W_ABS, 0, 0, _OFF_NR),
    ]
    if arch == "x86_64":
        prog += [(_JGE_K, 0, 1, _X32_SYSCALL_BIT), (_RET_K, 0, 0, _RET_KILL_PROCESS)]
    # One test per denied number: on a match jump to the EPERM return below the list.
    for i, nr in enumerate(denied):
        prog.append((_JEQ_K, len(denied) - i + 2, 0, nr))
    prog += [
        (_JEQ_K, 0, 1, _CLONE3),
        (_RET_K, 0, 0, _RET_ERRNO | errno.ENOSYS),  # no flags to inspect: force clone()
        (_JEQ_K, 1, 4, _CLONE[arch]),  # clone: check its flags; else allow
        (_RET_K, 0, 0, eperm),  # target of every deny-list match
        (_LD_W_ABS, 0, 0, _OFF_ARG0),
        (_JSET_K, 0, 1, _NAMESPACE_FLAGS),
        (_RET_K, 0, 0, eperm),
        (_RET_K, 0, 0, _RET_ALLOW),
    ]
    return prog


class PreparedConfinement:
    """Built before the fork; `isolate_network()` and `apply_seccomp()` run in the zygote."""

    def __init__(self) -> None:
        """Raises OSError on an architecture without a syscall table here (fail closed)."""
        arch = platform.machine()
        if arch not in DENIED_SYSCALLS:
            raise OSError(errno.ENOSYS, "no seccomp table for this architecture")
        self._libc = ctypes.CDLL(None, use_errno=True)  # loaded here, never after the fork
        prog = _program(arch)
        self._filters = (_SockFilter * len(prog))(*(_SockFilter(*ins) for ins in prog))
        self._fprog = _SockFprog(len(prog), self._filters)
        self._args = [ctypes.c_ulong(v) for v in (_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0,
                                                   _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER)]
        self.instructions = len(prog)

    def isolate_network(self) -> bool:
        """A new, empty network namespace for this process; False where that is refused."""
        return self._libc.unshare(ctypes.c_int(_CLONE_NEWNET)) == 0

    def apply_seccomp(self) -> None:
        """no_new_privs, then the filter. Raises OSError when the kernel refuses either."""
        a = self._args
        if self._libc.prctl(a[0], a[1], a[2], a[3], a[4]) != 0:
            raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS failed")
        if self._libc.prctl(a[5], a[6], ctypes.byref(self._fprog), a[3], a[4]) != 0:
            raise OSError(ctypes.get_errno(), "seccomp filter refused")


def program_bytes(arch: str) -> bytes:
    """The filter as the kernel reads it (struct sock_filter[]), for inspection in tests."""
    return b"".join(struct.pack("=HBBI", *ins) for ins in _program(arch))
