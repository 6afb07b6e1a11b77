"""Write policies/seccomp.json: Docker's default seccomp profile plus only what FUSE mounting needs.

The base is the allow-list of Docker's default profile (moby `profiles/seccomp/default.json`) as
it applies to a container WITHOUT CAP_SYS_ADMIN — written here from its documented facts, not
copied. Docker's default widens the filter when SYS_ADMIN is granted (mount, umount2, unshare,
setns, bpf, namespace flags to clone/clone3, the new mount API, ...). secure-trainer needs
SYS_ADMIN only so root can mount the gocryptfs workspace, so this profile adds back exactly:

* `mount`, `umount2` (and `umount` on 32-bit ABIs): gocryptfs/go-fuse (as root) and
  fusermount3 mount and unmount the FUSE filesystem with these calls.

Everything else granted with SYS_ADMIN by Docker stays refused: `unshare`, `setns`, `clone`
with CLONE_NEW* flags, `clone3` (ENOSYS, so libc falls back to clone), `bpf`, `perf_event_open`,
`fsopen`/`fsmount`/`move_mount`/`open_tree`/`fspick`/`fsconfig`/`mount_setattr`, `pivot_root`,
`sethostname`, `setdomainname`, `quotactl`, `syslog`, `lookup_dcookie`, `fanotify_init`.
Capability-gated extras of Docker's profile are left out as well, because the image is never
run with the capabilities that unlock them (SYS_PTRACE, SYS_MODULE, SYS_TIME, SYS_BOOT, ...).
FUSE itself needs no further syscall: /dev/fuse is opened, read and written with `openat`,
`read`, `write`, `ioctl`, `poll`, which the base already allows; `auditctl` (kernel audit mode)
talks netlink through `socket`/`sendto`/`recvfrom`, also in the base.

Usage: python scripts/seccomp_profile.py [--check]   (--check: exit 1 if the file is stale)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "policies" / "seccomp.json"

EPERM = 1
ENOSYS = 38
AF_VSOCK = 40
# CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |
# CLONE_NEWNET: clone() may create threads and processes, never namespaces.
CLONE_NAMESPACE_FLAGS = 0x7E020000
# personality(): PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32, query (0xffffffff).
PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)


def _words(text: str) -> list[str]:
    return text.split()


# Docker's default allow-list (no capability condition), all ABIs.
BASE_ALLOW = _words("""
accept accept4 access adjtimex alarm bind brk cachestat capget capset chdir chmod chown chown32
clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64
clock_nanosleep clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2
dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait
epoll_wait_old eventfd eventfd2 execve execveat exit exit_group faccessat faccessat2 fadvise64
fadvise64_64 fallocate fanotify_mark fchdir fchmod fchmodat fchmodat2 fchown fchown32 fchownat
fcntl fcntl64 fdatasync fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat fstat64
fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex futex_requeue futex_time64
futex_wait futex_waitv futex_wake futimesat getcpu getcwd getdents getdents64 getegid getegid32
geteuid geteuid32 getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp
getpid getppid getpriority getrandom getresgid getresgid32 getresuid getresuid32 getrlimit
get_robust_list getrusage getsid getsockname getsockopt get_thread_area gettid gettimeofday
getuid getuid32 getxattr inotify_add_watch inotify_init inotify_init1 inotify_rm_watch io_cancel
ioctl io_destroy io_getevents io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set io_setup
io_submit ipc kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown
lchown32 lgetxattr link linkat listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr
lstat lstat64 madvise map_shadow_stack membarrier memfd_create memfd_secret mincore mkdir
mkdirat mknod mknodat mlock mlock2 mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open
mq_timedreceive mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap msgctl
msgget msgrcv msgsnd msync munlock munlockall munmap name_to_handle_at nanosleep newfstatat
_newselect open openat openat2 pause pidfd_getfd pidfd_open pidfd_send_signal pipe pipe2
pkey_alloc pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2
prlimit64 process_mrelease pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read readahead
readlink readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages
removexattr rename renameat renameat2 restart_syscall rmdir rseq rt_sigaction rt_sigpending
rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait
rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr sched_getparam
sched_get_priority_max sched_get_priority_min sched_getscheduler sched_rr_get_interval
sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam sched_setscheduler
sched_yield seccomp select semctl semget semop semtimedop semtimedop_time64 send sendfile
sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32
setgroups setgroups32 setitimer setpgid setpriority setregid setregid32 setresgid setresgid32
setresuid setresuid32 setreuid setreuid32 setrlimit set_robust_list setsid setsockopt
set_thread_area set_tid_address setuid setuid32 setxattr shmat shmctl shmdt shmget shutdown
sigaltstack signalfd signalfd4 sigprocmask sigreturn socketcall socketpair splice stat stat64
statfs statfs64 statx symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time
timer_create timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime
timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime
timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat utime
utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev
""")

# Docker's per-architecture additions (x86 family, arm family).
X86_ALLOW = ["arch_prctl", "modify_ldt"]
ARM_ALLOW = ["arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint",
             "cacheflush", "set_tls"]

# The one addition of this profile: FUSE mount/unmount (see the module docstring).
FUSE_ALLOW = ["mount", "umount", "umount2"]


def profile() -> dict[str, object]:
    """The profile as a JSON-ready dict (Docker's seccomp profile format)."""
    return {
        "comment": "secure-trainer: Docker's default seccomp profile (as for a container "
                   "without CAP_SYS_ADMIN) plus mount/umount2 for the FUSE workspace. "
                   "Generated by scripts/seccomp_profile.py; see its docstring.",
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "archMap": [
            {"architecture": "SCMP_ARCH_X86_64",
             "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
            {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
        ],
        "syscalls": [
            {"names": sorted(BASE_ALLOW), "action": "SCMP_ACT_ALLOW",
             "comment": "Docker default allow-list"},
            {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_NE"}],
             "comment": "any address family but AF_VSOCK (Docker default)"},
            *({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
               "args": [{"index": 0, "value": value, "op": "SCMP_CMP_EQ"}]}
              for value in PERSONALITIES),
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0,
                       "op": "SCMP_CMP_MASKED_EQ"}],
             "comment": "threads and processes, no new namespaces (Docker default w/o SYS_ADMIN)"},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS,
             "comment": "flags cannot be filtered: ENOSYS makes libc fall back to clone"},
            {"names": X86_ALLOW, "action": "SCMP_ACT_ALLOW",
             "includes": {"arches": ["amd64", "x32", "386"]}},
            {"names": ARM_ALLOW, "action": "SCMP_ACT_ALLOW",
             "includes": {"arches": ["arm", "arm64"]}},
            {"names": FUSE_ALLOW, "action": "SCMP_ACT_ALLOW",
             "comment": "secure-trainer addition: FUSE mount/unmount of the gocryptfs workspace"},
        ],
    }


def render() -> str:
    """The file's exact text."""
    return json.dumps(profile(), indent=2) + "\n"


def main() -> int:
    """Write (or with --check, verify) policies/seccomp.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is stale")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not OUT.is_file() or OUT.read_text() != text:
            print(f"{OUT.name} is stale: run python scripts/seccomp_profile.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
