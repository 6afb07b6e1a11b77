"""Kernel audit rules for a run: render the template, load with auditctl, remove exactly those.

Modes: `kernel` (we load and remove our rules), `host` (the host installs them; we only record
what `auditctl -l` shows, if we may look), `app` (no kernel rules; the app log is always on).
SECURITY: teardown removes only the rules this run loaded, rule by rule, never `auditctl -D`
(that would erase the host's rules). Error messages name no path.
"""

from __future__ import annotations

import enum
import os
import shlex
import string
from dataclasses import dataclass, field
from pathlib import Path

from entrypoint import proc
from entrypoint.errors import AuditError, ConfigError

__all__ = [
    "RULE_KEY",
    "AuditMode",
    "AuditPaths",
    "AuditRule",
    "Auditctl",
    "HostAuditReport",
    "LoadedRules",
    "default_rules_file",
    "normalise_rule",
    "render_rules",
]

# coupling: policies/audit/secure-trainer.rules, entrypoint/policy/gatherers/audit.py
RULE_KEY = "secure-trainer"
RULES_FILE_NAME = "secure-trainer.rules"


class AuditMode(enum.Enum):
    """Who owns the kernel audit rules during a run."""

    KERNEL = "kernel"
    HOST = "host"
    APP = "app"

    @classmethod
    def parse(cls, value: str) -> AuditMode:
        """`kernel|host|app` → AuditMode. Raises ConfigError naming the allowed values."""
        try:
            return cls(value.strip().lower())
        except ValueError:
            raise ConfigError("audit mode must be one of kernel, host, app") from None


def default_rules_file() -> Path:
    """$ST_POLICY_DIR/audit/secure-trainer.rules, else the repository's policies/audit/."""
    base = os.environ.get("ST_POLICY_DIR")
    root = Path(base) if base else Path(__file__).resolve().parents[2] / "policies"
    return root / "audit" / RULES_FILE_NAME


@dataclass(frozen=True)
class AuditPaths:
    """The real paths and ids the template is rendered with."""

    workspace: Path
    cipher_dir: Path
    trainer_uid: int
    binary: Path | None = None
    vault_files: tuple[Path, ...] = ()


@dataclass(frozen=True)
class AuditRule:
    """One rendered rule as auditctl argv (add form, without the program name)."""

    args: tuple[str, ...]

    def delete_args(self) -> tuple[str, ...]:
        """The same rule in delete form: `-w` → `-W`, `-a` → `-d`."""
        flag = {"-w": "-W", "-a": "-d"}[self.args[0]]
        return (flag, *self.args[1:])


def _values(paths: AuditPaths) -> dict[str, list[str]]:
    def existing(p: Path | None) -> list[str]:
        # A watch on a missing path is refused by the kernel; skip it rather than fail the run.
        return [str(p)] if p is not None and p.exists() else []

    return {
        "workspace": existing(paths.workspace),
        "cipher_dir": existing(paths.cipher_dir),
        "gocryptfs_conf": existing(paths.cipher_dir / "gocryptfs.conf"),
        "binary": existing(paths.binary),
        "vault_file": [v for f in paths.vault_files for v in existing(f)],
        "uid": [str(paths.trainer_uid)],
    }


def render_rules(template: str, paths: AuditPaths, *, key: str = RULE_KEY) -> list[AuditRule]:
    """Render the template: one rule per line per combination of its placeholders' values;
    lines with a placeholder that has no value are dropped. Raises AuditError for a rule without `-k <key>` or an unknown
    placeholder or option (only -w/-a rules are allowed).
    """
    values = _values(paths)
    rules: list[AuditRule] = []
    for lineno, line in enumerate(template.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        tokens = shlex.split(line)  # split before substituting: paths may contain spaces
        if tokens[0] not in ("-w", "-a") or tokens[-2:] != ["-k", key]:
            raise AuditError(f"audit rules line {lineno}: only -w/-a rules ending in -k {key}")
        names = {m.group("named") or m.group("braced")
                 for t in tokens for m in string.Template.pattern.finditer(t)
                 if m.group("named") or m.group("braced")}
        unknown = names - values.keys()
        if unknown:
            raise AuditError(f"audit rules line {lineno}: unknown placeholder {min(unknown)}")
        # One rule per combination of the placeholders' values (a placeholder without a value
        # drops the line).
        combos: list[dict[str, str]] = [{}]
        for name in sorted(names):
            combos = [{**c, name: v} for c in combos for v in values[name]]
        for combo in combos:
            rules.append(AuditRule(tuple(string.Template(t).substitute(combo) for t in tokens)))
    return rules


@dataclass(frozen=True)
class HostAuditReport:
    """Host mode: what we could see of the host-managed rules (never a failure)."""

    visible: bool
    """`auditctl -l` could be run (root with CAP_AUDIT_CONTROL)."""
    our_rules: int | None
    """Rules tagged with our key, when visible."""


@dataclass
class LoadedRules:
    """The rules one `load` put into the kernel, in load order (for exact removal)."""

    rules: list[AuditRule] = field(default_factory=list)
    skipped: int = 0


class Auditctl:
    """Client of the auditctl binary. Raises AuditError (exit 6) on failure."""

    def __init__(self, binary: str = "auditctl", *, key: str = RULE_KEY,
                 timeout: float = 15.0) -> None:
        self.binary = binary
        self.key = key
        self.timeout = timeout

    def _run(self, args: tuple[str, ...] | list[str], what: str, check: bool = True) -> int:
        return proc.run([self.binary, *args], timeout=self.timeout, error=AuditError,
                        what=what, check=check).returncode

    def list_rules(self) -> list[str]:
        """The kernel's current rules, one per line (`auditctl -l`). Raises AuditError."""
        out = proc.run([self.binary, "-l"], timeout=self.timeout, error=AuditError,
                       what="auditctl -l").stdout.decode("utf-8", "replace")
        return [ln for ln in out.splitlines() if ln.strip() and ln.strip() != "No rules"]

    def ours(self) -> list[str]:
        """Current rules carrying our key (`-k KEY` on watches, `key=KEY` on syscall rules)."""
        return [r for r in self.list_rules() if r.endswith((f"-k {self.key}", f"key={self.key}"))]

    def load(self, rules: list[AuditRule]) -> LoadedRules:
        """Add each rule; on the first failure remove the ones already added and raise
        AuditError (fail closed: a run never starts with half its rules).
        """
        loaded = LoadedRules()
        for rule in rules:
            try:
                self._run(rule.args, "loading an audit rule")
            except AuditError:
                self.remove(loaded)
                raise
            loaded.rules.append(rule)
        return loaded

    def remove(self, loaded: LoadedRules) -> int:
        """Delete exactly the rules of `loaded` (newest first); a rule already gone is fine.
        Returns how many were deleted. Raises AuditError if any of ours is still listed after.
        """
        removed = 0
        for rule in reversed(loaded.rules):
            if self._run(rule.delete_args(), "removing an audit rule", check=False) == 0:
                removed += 1
        remaining = {_normalise(r) for r in self.ours()}
        left = [r for r in loaded.rules if _normalise_args(r.args) in remaining]
        if left:
            raise AuditError(f"{len(left)} audit rule(s) of this run could not be removed")
        loaded.rules.clear()
        return removed

    def enabled(self) -> bool | None:
        """Whether the kernel records audit events (`auditctl -s`: enabled 1|2); None if unknown.

        Rules load even while auditing is disabled, but then nothing is recorded.
        """
        try:
            out = proc.run([self.binary, "-s"], timeout=self.timeout, error=AuditError,
                           what="auditctl -s").stdout.decode("utf-8", "replace")
        except AuditError:
            return None
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == "enabled":
                return parts[1] in ("1", "2")
        return None

    def host_report(self) -> HostAuditReport:
        """Host mode: count our rules if `auditctl -l` is permitted; never raises."""
        try:
            return HostAuditReport(visible=True, our_rules=len(self.ours()))
        except AuditError:
            return HostAuditReport(visible=False, our_rules=None)


def normalise_rule(text: str) -> str:
    """One comparable form of a rule, as `auditctl -l` lists it or as we pass it.

    `auditctl -l` prints `-F key=K` for syscall rules and watch permissions in `rwxa` order
    (`-p xwa` is listed as `-p wxa`); both are folded so listed and rendered rules compare.
    """
    tokens = text.replace("-F key=", "-k ").split()
    for i, tok in enumerate(tokens[:-1]):
        if tok == "-p":
            tokens[i + 1] = "".join(c for c in "rwxa" if c in tokens[i + 1])
    return " ".join(tokens)


def _normalise(listed: str) -> str:
    return normalise_rule(listed)


def _normalise_args(args: tuple[str, ...]) -> str:
    return normalise_rule(" ".join(args))
