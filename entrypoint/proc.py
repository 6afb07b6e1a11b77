"""Every subprocess of the envelope: argv list, no shell, a timeout, secrets through stdin.

Failures become the caller's typed error with a one-line, redacted stderr excerpt.
SECURITY: never puts a secret in argv or env, never uses a shell, never lets raw stderr (which can
name paths) reach an error message unredacted.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping

from entrypoint.errors import SecureTrainerError
from entrypoint.redact import Redactor

__all__ = ["STDERR_EXCERPT_CHARS", "minimal_env", "run"]

# A one-line error should stay readable; the full stderr is never logged anyway.
STDERR_EXCERPT_CHARS = 200

# Noise some tools print when they cannot reach syslog (gocryptfs in containers); not a cause.
_NOISE_PREFIXES = ("SwitchToSyslog", "SwitchLoggerToSyslog")


def minimal_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A small, secret-free environment for helper binaries (PATH, LANG=C, plus `extra`).

    SECURITY: children never inherit the envelope's env, which may hold VAULT_TOKEN.
    """
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LANG": "C",
           "LC_ALL": "C"}
    if extra:
        env.update(extra)
    return env


def _excerpt(stderr: bytes, redactor: Redactor) -> str:
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines()]
    useful = [ln for ln in lines if ln and not ln.startswith(_NOISE_PREFIXES)]
    text = "; ".join(useful)
    text = redactor.scrub(text)
    if len(text) > STDERR_EXCERPT_CHARS:
        text = text[:STDERR_EXCERPT_CHARS] + "..."
    return text


def run(
    argv: list[str],
    *,
    stdin: bytes | bytearray | None = None,
    timeout: float,
    error: type[SecureTrainerError],
    what: str,
    env: dict[str, str] | None = None,
    check: bool = True,
    redactor: Redactor | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run `argv` (no shell) with `stdin` piped in; return the completed process.

    `env` defaults to `minimal_env()`. With `check` (default) a non-zero exit raises
    `error(f"{what} failed (exit N): <redacted stderr>")`; a missing binary or a timeout raise
    `error` too. The stdin buffer is passed as-is (a bytearray is not copied to bytes), so the
    caller can wipe it afterwards.
    Raises: `error` (the caller's SecureTrainerError subclass).
    """
    scrub = redactor or Redactor()
    try:
        # SECURITY: argv list, shell=False, explicit env; the secret only travels in `stdin`.
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env if env is not None else minimal_env(),
            close_fds=True,
        )
    except FileNotFoundError:
        raise error(f"{what} failed: the program is not installed") from None
    except OSError as exc:
        raise error(f"{what} failed: could not start ({exc.strerror})") from None
    try:
        out, err = proc.communicate(input=stdin, timeout=timeout)  # type: ignore[arg-type]
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise error(f"{what} failed: timed out after {timeout:g}s") from None
    result = subprocess.CompletedProcess(argv, proc.returncode, out, err)
    if check and proc.returncode != 0:
        detail = _excerpt(err, scrub)
        suffix = f": {detail}" if detail else ""
        raise error(f"{what} failed (exit {proc.returncode}){suffix}")
    return result
