"""Helpers of the container e2e tests: the docker CLI, production `docker run` flags, a run.

The flags are the README's production command; the Vault credentials go in as read-only
bind-mounted files, never as env values or argv.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.integration.leakprobe import LeakReport, Needle
from tests.integration.run_support import RunCase

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT_S = 2400
RUN_TIMEOUT_S = 600
# coupling: README/docs/container.md production command. The root start is needed to mount
# (SYS_ADMIN) and to drop to uid 10001 (SETUID/SETGID/SETPCAP); CHOWN/FOWNER/DAC_OVERRIDE let
# root hand runs/ and tmp/ to the trainer and wipe them; KILL lets it stop the child.
CAPS = ("SYS_ADMIN", "SETUID", "SETGID", "SETPCAP", "CHOWN", "FOWNER", "DAC_OVERRIDE", "KILL")
SECRETS = "/run/secrets"
SECCOMP = REPO_ROOT / "policies" / "seccomp.json"
TRAIN_ARGS = ["--pretrained_model_name_or_path", "models/tiny", "--train_data_dir",
              "datasets/demo", "--caption_extension", ".txt", "--resolution", "64",
              "--network_dim", "4", "--network_alpha", "4", "--learning_rate", "1e-3",
              "--train_batch_size", "2", "--seed", "1", "--output_name", "lora"]


# linux/capability.h order; index = capability number.
CAP_NAMES = ("CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
             "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST",
             "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO",
             "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
             "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE",
             "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
             "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE")


def all_caps_flags() -> list[str]:
    """`--privileged`, or, where this host's own bounding set lacks a capability (dockerd then
    cannot grant it and --privileged fails), `--cap-add ALL` minus exactly the missing ones."""
    status = Path("/proc/self/status").read_text()
    bound = int(next(line.split()[1] for line in status.splitlines()
                     if line.startswith("CapBnd:")), 16)
    missing = [name for bit, name in enumerate(CAP_NAMES) if not bound >> bit & 1]
    if not missing:
        return ["--privileged"]
    flags = ["--cap-add", "ALL", "--security-opt", "seccomp=unconfined", "--device", "/dev/fuse"]
    for name in missing:
        flags += ["--cap-drop", name]
    return flags


def docker(*args: str, timeout: float = 120, check: bool = True,
           stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run the docker CLI; raises with its stderr when `check` and it fails."""
    proc = subprocess.run(["docker", *args], capture_output=True, timeout=timeout, input=stdin,
                          check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {args[0]} failed ({proc.returncode}): "
                             f"{proc.stderr.decode(errors='replace')[-2000:]}")
    return proc


@dataclass
class ContainerCase:
    """A prepared workspace (keys in Vault, tiny model + salted dataset inside) for containers."""

    run: RunCase
    dataset: Path
    needles: list[Needle]

    def vault_flags(self) -> list[str]:
        """`-e` and read-only `-v` flags: Vault location, key paths and the AppRole files."""
        flags: list[str] = []
        for key, value in self.run.env.items():
            if key in ("ST_VAULT_ROLE_ID_FILE", "ST_VAULT_SECRET_ID_FILE"):
                target = f"{SECRETS}/{Path(value).name}"
                flags += ["-v", f"{value}:{target}:ro", "-e", f"{key}={target}"]
            else:
                flags += ["-e", f"{key}={value}"]
        return flags

    def flags(self, *, fuse: bool = True, read_only: bool = True) -> list[str]:
        """The production `docker run` flags for this case (loopback Vault via host network)."""
        flags = ["--network", "host", "--user", "0:0", "--cap-drop", "ALL"]
        for cap in CAPS:
            flags += ["--cap-add", cap]
        flags += ["--security-opt", "no-new-privileges", "--security-opt", f"seccomp={SECCOMP}",
                  "--tmpfs", "/tmp:rw,noexec,nosuid",
                  "-v", f"{self.run.cipher}:/cipher", "-e", "OMP_NUM_THREADS=2"]
        if read_only:
            flags.append("--read-only")
        if fuse:
            flags += ["--device", "/dev/fuse"]
        return flags + self.vault_flags()


@dataclass
class ContainerResult:
    """A finished `docker run`: its exit code, output and (when kept) the container's name."""

    rc: int
    stdout: str
    stderr: str
    name: str
    probe: LeakReport | None = None


def run_container(image: str, flags: list[str], args: list[str], *, keep: bool = False,
                  timeout: float = RUN_TIMEOUT_S) -> ContainerResult:
    """`docker run` the image with `flags` and entrypoint `args`; removed after unless `keep`."""
    name = f"st-test-{uuid.uuid4().hex[:10]}"
    argv = ["docker", "run", "--name", name, *([] if keep else ["--rm"]), *flags, image, *args]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        docker("rm", "-f", name, check=False)
        raise
    return ContainerResult(proc.returncode, proc.stdout, proc.stderr, name)


def wait_for_log(name: str, text: str, deadline_s: float) -> bool:
    """Poll container `name`'s logs until `text` shows up (True) or `deadline_s` passes (False)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        logs = docker("logs", name, check=False)
        if text in (logs.stdout + logs.stderr).decode(errors="replace"):
            return True
        time.sleep(0.5)
    return False
