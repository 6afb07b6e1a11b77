"""A hostile trainer for adversarial tests: a shell script run as the training uid inside a
real `run`, injected as the Lifecycle's trainer (its `TrainerSpawner` dependency).

The script gets the run's output dir (`$OUT`, relative to the workspace, its cwd), the LoRA
name (`$NAME`) and nothing else: no Vault variable, the caches' tmp dir as HOME. It runs through
`setpriv` with the training uid/gid, no groups, empty bounding/inheritable/ambient sets and
no_new_privs — what the production child gets from `privileges.py` — because the native venv
here is not reachable by that uid. Its stdout is echoed like the real trainer's.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from entrypoint.audit.auditctl import Auditctl, AuditMode
from entrypoint.run.lifecycle import Lifecycle, RunSettings
from entrypoint.vault.client import VaultClient
from entrypoint.vault.settings import VaultSettings
from tests.integration.run_support import TRAIN_ARGS, RunCase

TRAINER_IDS = (10001, 10001)
# A probe prints `READ <label>` when an attempt succeeds and `DENIED <label>` otherwise.
PROBE = 'probe() { if sh -c "$2" >/dev/null 2>&1; then echo "READ $1"; else echo "DENIED $1"; fi; }\n'
FAKE_LORA = 'printf "not-a-real-lora" > "$OUT/$NAME.safetensors"\n'


def _flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


@dataclass
class HostileTrainer:
    """A `TrainerSpawner` that runs `script` with /bin/sh as the training uid."""

    script: str
    lines: list[str] = field(default_factory=list)

    def __call__(self, args: list[str], *, cwd: Path, tmp: Path, ids: tuple[int, int] | None,
                 extra_env: dict[str, str], redact: list[str],
                 echo: Callable[[str], None]) -> int:
        assert ids is not None, "adversarial runs always drop to the training uid"
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp), "LANG": "C.UTF-8",
               "OUT": _flag(args, "--output_dir"), "NAME": _flag(args, "--output_name")}
        done = subprocess.run(
            ["setpriv", f"--reuid={ids[0]}", f"--regid={ids[1]}", "--clear-groups",
             "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--no-new-privs",
             "--", "/bin/sh", "-c", PROBE + self.script],
            cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=120, check=False)
        for line in done.stdout.splitlines():
            self.lines.append(line)
            echo(line)
        return done.returncode

    def verdicts(self) -> dict[str, str]:
        """label -> READ | DENIED, from the probe lines."""
        out = {}
        for line in self.lines:
            word, _, label = line.partition(" ")
            if word in ("READ", "DENIED"):
                out[label] = word
        return out


def lifecycle(case: RunCase, trainer: HostileTrainer, *, dataset: str = "datasets/demo",
              policy: str = "dev", echo: Callable[[str], None] | None = None,
              audit_mode: AuditMode = AuditMode.APP) -> Lifecycle:
    """A real Lifecycle (real OpenBao, gocryptfs, app audit) for `case` with `trainer`."""
    args = [a if a != "datasets/demo" else dataset for a in TRAIN_ARGS]
    settings = RunSettings(cipher_dir=case.cipher, mountpoint=case.mnt, state_dir=case.state,
                           policy=policy, train_args=(*args, "--max_train_steps", "1"),
                           train_ids=TRAINER_IDS, audit_mode=audit_mode)
    vault = VaultClient.from_settings(VaultSettings.from_env(case.env))
    return Lifecycle(settings, vault=vault, gocryptfs=case.fs, auditctl=Auditctl(),
                     echo=echo or (lambda _line: None), trainer=trainer)
