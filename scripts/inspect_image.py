"""Our own image inspection for `make scan`: what the Dockerfile promises, checked on the built image.

Checks: the configured user is not root; no secret or token in env, labels or layer history;
the setuid/setgid file list equals the allow-list (fusermount3 only); no world-writable directory
outside /tmp; no pip, compiler or downloader in the runtime; no shell history or package/pip
caches. Reads the image through `docker image inspect`, `docker history` and `docker export`
(a created, never started container). Prints one line per check ("ok"/"FINDING") and exits 1 on
any finding. Must never: start the image or print a value it flags as a secret.

Usage: python scripts/inspect_image.py IMAGE [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess  # nosec B404 - fixed docker argv, no shell
import sys
import tarfile
from dataclasses import dataclass, field

# coupling: Dockerfile keeps the setuid bit on fusermount3 only.
SETID_ALLOW = {"usr/bin/fusermount3"}
WORLD_WRITABLE_ALLOW = {"tmp"}
# Names that must not carry a value, and value shapes of common tokens.
SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSW(OR)?D|PRIVATE_KEY|API_KEY|ACCESS_KEY|CREDENTIAL)",
                         re.IGNORECASE)
SECRET_VALUE = re.compile(
    r"(hvs\.[A-Za-z0-9_-]{20,}|hvb\.[A-Za-z0-9_-]{20,}|s\.[A-Za-z0-9]{24}\b|"
    r"AKIA[0-9A-Z]{16}|ghp_[A-Za-z0-9]{36}|hf_[A-Za-z0-9]{30,}|xox[bap]-[A-Za-z0-9-]{10,}|"
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----)")
# Name-only env vars that point at secrets are fine (ST_VAULT_ROLE_ID_FILE=/run/secrets/...).
SAFE_SECRET_NAME = re.compile(r"_FILE$|_PATH$|^ST_VAULT_AUTH$")
FORBIDDEN_BINARIES = {
    "pip": re.compile(r"^(opt/venv/bin|usr/bin|usr/local/bin)/pip[0-9.]*$"),
    "pip module": re.compile(r"^(opt/venv/lib/python3\.\d+/site-packages|"
                             r"usr/lib/python3/dist-packages)/pip/__init__\.py$"),
    "compiler": re.compile(r"^usr/bin/(gcc|g\+\+|cc|c\+\+|clang|x86_64-linux-gnu-gcc)[-0-9.]*$"),
    "downloader": re.compile(r"^usr/bin/(curl|wget)$"),
}
LEFTOVERS = re.compile(
    r"(^|/)\.(bash|zsh|python|mysql|psql)_history$|(^|/)\.(lesshst|viminfo|wget-hsts)$|"
    r"^root/\.(cache|pip|npm)/.|^home/[^/]+/\.cache/.|^var/cache/apt/archives/.+\.deb$|"
    r"^var/lib/apt/lists/[^/]+_(Packages|Release|InRelease|Sources)|^tmp/.|^var/tmp/.")


@dataclass
class Check:
    """One inspection result; `findings` are short and never contain a flagged value."""

    name: str
    findings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No finding."""
        return not self.findings


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True,  # nosec B603
                          check=True, timeout=120).stdout


def check_config(image: str) -> list[Check]:
    """User, env, labels and history from the image metadata."""
    info = json.loads(_docker("image", "inspect", image))[0]
    cfg = info.get("Config") or {}
    user = Check("user is not root")
    name = str(cfg.get("User") or "").split(":", 1)[0]
    if name in ("", "0", "root"):
        user.findings.append(f"image user is {name or 'unset (root)'}")
    env = Check("no secrets in env")
    for item in cfg.get("Env") or []:
        key, _, value = item.partition("=")
        if SECRET_VALUE.search(value) or (SECRET_NAME.search(key) and value
                                          and not SAFE_SECRET_NAME.search(key)):
            env.findings.append(f"env {key} carries a value")
    labels = Check("no secrets in labels")
    for key, value in (cfg.get("Labels") or {}).items():
        if SECRET_VALUE.search(str(value)) or SECRET_NAME.search(key):
            labels.findings.append(f"label {key}")
    history = Check("no secrets in history")
    lines = _docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", image).splitlines()
    for i, line in enumerate(lines):
        assignments = re.findall(r"\b([A-Z_]*(?:TOKEN|SECRET|PASSWORD)[A-Z_]*)=(\S+)", line)
        if SECRET_VALUE.search(line) or any(not SAFE_SECRET_NAME.search(k) for k, _ in assignments):
            history.findings.append(f"layer {len(lines) - i} command holds a secret-like value")
    return [user, env, labels, history]


def check_filesystem(image: str) -> list[Check]:
    """setuid/setgid, world-writable dirs, forbidden binaries and leftovers, from `docker export`."""
    cid = _docker("create", image).strip()
    setid = Check("setuid/setgid == allow-list (fusermount3)")
    writable = Check("no world-writable dirs outside /tmp")
    binaries = Check("no pip, compiler or downloader")
    leftovers = Check("no shell history or caches")
    seen_setid: set[str] = set()
    try:
        with subprocess.Popen(["docker", "export", cid], stdout=subprocess.PIPE) as proc:  # nosec B603
            assert proc.stdout is not None
            with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                for member in tar:
                    path = member.name.lstrip("./").rstrip("/")
                    if member.isfile() and member.mode & 0o6000:
                        seen_setid.add(path)
                    if member.isdir() and member.mode & 0o002 and path not in WORLD_WRITABLE_ALLOW:
                        writable.findings.append(f"/{path} is world-writable")
                    if member.isfile() or member.issym():
                        for what, pattern in FORBIDDEN_BINARIES.items():
                            if pattern.search(path):
                                binaries.findings.append(f"{what}: /{path}")
                    if member.isfile() and LEFTOVERS.search(path):
                        leftovers.findings.append(f"/{path}")
    finally:
        _docker("rm", "-f", cid)
    for path in sorted(seen_setid - SETID_ALLOW):
        setid.findings.append(f"unexpected setuid/setgid: /{path}")
    for path in sorted(SETID_ALLOW - seen_setid):
        setid.findings.append(f"allow-listed /{path} has no setuid bit (FUSE as non-root breaks)")
    leftovers.findings = leftovers.findings[:20]
    return [setid, writable, binaries, leftovers]


def main() -> int:
    """Inspect IMAGE; exit 1 on any finding, 2 when the image cannot be read."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image")
    parser.add_argument("--json", help="also write the results as JSON to this file")
    args = parser.parse_args()
    try:
        checks = check_config(args.image) + check_filesystem(args.image)
    except (subprocess.CalledProcessError, tarfile.TarError) as exc:
        print(f"inspect: cannot read image {args.image} ({type(exc).__name__})", file=sys.stderr)
        return 2
    for check in checks:
        print(f"{'ok' if check.ok else 'FINDING':8} {check.name}")
        for finding in check.findings:
            print(f"         - {finding}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump([{"check": c.name, "findings": c.findings} for c in checks], fh, indent=2)
    return 0 if all(c.ok for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
