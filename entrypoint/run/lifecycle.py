"""The `run` lifecycle: policy → Vault → key → mount → audit → train (unprivileged) → seal → teardown.

Every phase writes one app-audit record; teardown (remove our kernel audit rules, wipe the run's
tmp and the scratch targets, unmount, revoke the token, clear the run marker) runs on success,
error and SIGINT/SIGTERM (raised as `Interrupted`). Steps that must not be cut in half (login,
mount, rule load, teardown) run with signals deferred (`entrypoint/run/signals.py`). A run killed by
SIGKILL is cleaned up by the next start (`entrypoint/run/recovery.py`).
The settings are `entrypoint/run/settings.py` (re-exported here), the `--trainer llm` phases
`entrypoint/run/llm_phases.py` (inherited).
SECURITY: the passphrase only travels Vault → bytearray → gocryptfs stdin and is wiped after the
mount; the training child gets a minimal env (no VAULT_*), its output passes the redactor.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from entrypoint.audit.anchor import anchor_run
from entrypoint.audit.applog import AppAuditLog
from entrypoint.audit.auditctl import Auditctl, AuditMode, AuditPaths
from entrypoint.audit.journal import PreMountJournal
from entrypoint.audit.run_rules import RunAudit
from entrypoint.errors import (
    ConfigError,
    SecureTrainerError,
    TrainingError,
)
from entrypoint.run.access import restrict_registry
from entrypoint.run.containment import kill_training_processes
from entrypoint.run.dp_check import DP_AUDIT_FIELDS
from entrypoint.run.llm_phases import LlmPhases
from entrypoint.run.marker import clear_run_marker, write_run_marker
from entrypoint.run.outputs import RunOutputs
from entrypoint.run.recovery import StaleRun, recover_stale_run, wipe_stale_tmp
from entrypoint.run.seal import Governance, register_sealed_run
from entrypoint.run.settings import RunSettings
from entrypoint.run.signals import deferred_signals
from entrypoint.run.trainer_child import CHILD_ERRORS, TrainerLauncher, TrainerSpawner
from entrypoint.run.wipe import default_targets, wipe
from entrypoint.vault.client import VaultClient
from entrypoint.workspace.gocryptfs import Gocryptfs, Workspace
from entrypoint.workspace.grants import grant_group_read, revoke_group_read
from entrypoint.workspace.keys import KeyManager

if TYPE_CHECKING:
    from secure_trainer.settings import DPSettings

__all__ = ["AUDIT_LOG", "Lifecycle", "RunSettings"]

AUDIT_LOG = "app.jsonl"  # coupling: registry_cmd AUDIT_LOG_RELPATH = audit/app.jsonl
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


def _program() -> Path | None:
    """The secure-trainer console script of this installation (watched by the kernel rules)."""
    beside = Path(sys.executable).parent / "secure-trainer"
    if beside.is_file():
        return beside
    found = shutil.which("secure-trainer")
    return Path(found) if found else None


def _has_flag(args: tuple[str, ...], name: str) -> bool:
    return any(a == name or a.startswith(name + "=") for a in args)


class Lifecycle(LlmPhases):
    """One secure run; side-effecting clients are passed in."""

    def __init__(self, settings: RunSettings, *, vault: VaultClient, gocryptfs: Gocryptfs,
                 auditctl: Auditctl, echo: Callable[[str], None],
                 trainer: TrainerSpawner | None = None) -> None:
        self._s = settings
        # The training child's launcher (tests inject a hostile one); by default the real
        # trainer on the configured interpreter.
        self._trainer = trainer or TrainerLauncher(settings.trainer_python)
        self._vault = vault
        self._fs = gocryptfs
        self._auditctl = auditctl
        self._echo = echo
        self._ws = Workspace(gocryptfs, settings.cipher_dir, settings.mountpoint)
        self._kaudit = RunAudit(settings.audit_mode, auditctl, settings.state_dir)
        self._log: AppAuditLog | None = None
        # Events before the mount go to a root-only journal at once (merged at the next mount).
        self._journal = PreMountJournal(settings.state_dir)
        self._mounted = False  # only what this run mounted is unmounted by its teardown
        self._stale: StaleRun | None = None
        self.run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:8]

    def _audit(self, event: str, **fields: object) -> int | None:
        if self._log is None:
            self._journal.append(event, run_id=self.run_id, **fields)
            return None
        return self._log.append(event, run_id=self.run_id, **fields)

    def _phase(self, name: str) -> None:
        self._echo(f"[{name}]")

    def _wipe_targets(self) -> list[Path]:
        """The scratch targets, minus any that hold what must survive the run.

        SECURITY: in the image /tmp is a target; a cipher dir or a Vault credential file that
        a site put below it must not be erased with it (that would lose the workspace).
        """
        s = self._s
        keep = [Path(os.path.realpath(p)) for p in (s.cipher_dir, *s.vault_files)]
        return [t for t in default_targets(dict(os.environ), state_dir=s.state_dir)
                if not any(k.is_relative_to(os.path.realpath(t)) for k in keep)]

    def _audit_paths(self) -> AuditPaths:
        s = self._s
        return AuditPaths(workspace=s.mountpoint, cipher_dir=s.cipher_dir,
                          trainer_uid=s.train_ids[0] if s.train_ids else os.geteuid(),
                          binary=_program(), vault_files=s.vault_files)

    def _preflight(self, phase: str, train: object | None,
                   log_level: str | None = None) -> None:
        from entrypoint.policy import PolicyContext, load_profile, parse_canary
        from entrypoint.policy.preflight import preflight

        s = self._s
        ctx = PolicyContext(profile=load_profile(s.policy), train=train,  # type: ignore[arg-type]
                            workspace_dir=s.mountpoint, cipher_dir=s.cipher_dir,
                            drop_ids=s.train_ids, audit_mode=s.audit_mode.value,
                            log_level=log_level or s.log_level,
                            canary=parse_canary(s.canary) if s.canary else None)
        try:
            decision = preflight(phase, ctx)  # type: ignore[arg-type]
        except SecureTrainerError as err:
            dec = getattr(err, "decision", None)
            self._audit("policy_denied", **{"phase": phase,
                                            **(dec.to_audit_fields() if dec is not None else {})})
            raise
        self._audit("policy", **{"phase": phase, **decision.to_audit_fields()})

    def execute(self) -> Path:
        """Run every phase; returns the LoRA's path inside the workspace. Raises our typed errors."""
        s = self._s
        owns_marker = False
        try:
            with deferred_signals():
                self._stale = recover_stale_run(s.state_dir, gocryptfs=self._fs,
                                                run_audit=self._kaudit,
                                                wipe_targets=self._wipe_targets())
                if self._stale is not None:
                    self._audit("recovered_stale_run", **self._stale.audit_fields())
                owns_marker = True
                write_run_marker(s.state_dir, self.run_id, s.mountpoint)
            self._phase("policy")
            self._preflight("pre-mount", None)
            self._phase("vault")
            with deferred_signals():  # a token issued mid-signal must still be revoked
                self._vault.login()
            self._vault.start_renewal()
            self._audit("vault_login")
            passphrase = KeyManager(self._vault, self._fs, s.cipher_dir).open_passphrase()
            self._phase("workspace")
            with deferred_signals():  # gocryptfs daemonizes: never leave a mount teardown missed
                try:
                    # runs/ and tmp/ must be usable by the training uid (it caches in tmp/<run>).
                    self._ws.open(passphrase, owner=s.train_ids, tied=True)  # dies with us
                    self._mounted = True
                finally:
                    passphrase.wipe()
            audit_key = self._vault.audit_key(create=True)
            self._log = AppAuditLog(self._ws.audit_dir / AUDIT_LOG, audit_key)
            self._journal.merge_into(self._log)  # this run's and earlier runs' pre-mount events
            self._audit("workspace_mounted")
            self._restrict_workspace("start")
            if self._stale is not None:
                report = wipe_stale_tmp(self._ws, self._stale)
                if report is not None:
                    self._audit("stale_tmp_wiped", wiped_files=report.files,
                                wiped_bytes=report.bytes)
            self._phase("audit")
            with deferred_signals():  # every rule added is recorded before a signal can land
                outcome = self._kaudit.start(self._audit_paths())
            if outcome is not None:
                self._audit(outcome.event, **outcome.fields)
            return self._train_and_seal()
        finally:
            with deferred_signals():
                self._teardown(owns_marker)

    def _contain(self, when: str) -> int:
        """SIGKILL every process of the training uid (a double-forked survivor of the child);
        returns how many there were. None to do when no drop is configured."""
        s = self._s
        killed = kill_training_processes(s.train_ids[0]) if s.train_ids else 0
        if killed:
            self._audit("trainer_survivors_killed", when=when, processes=killed)
        return killed

    def _restrict_workspace(self, when: str) -> None:
        """Least access: take back every grant to the training group (at the start too, as a
        SIGKILLed run never reached its teardown) and keep the registry owner-only."""
        s = self._s
        revoked = revoke_group_read(s.mountpoint, s.train_ids[1]) if s.train_ids else 0
        narrowed = restrict_registry(s.mountpoint)
        if revoked or narrowed:
            self._audit("access_revoked", when=when, grants=revoked, registry=narrowed)

    def _train_and_seal(self) -> Path:
        from secure_trainer.kohya.config import parse_train_args

        s = self._s
        if s.trainer == "llm":
            return self._train_and_seal_llm()
        tmp = self._ws.tmp_dir / self.run_id
        args = list(s.train_args)
        if not _has_flag(s.train_args, "--output_dir"):
            # coupling: entrypoint/run/outputs.py RunOutputs.out_arg
            args += ["--output_dir", f"runs/{self.run_id}/out"]
        tmp.mkdir(parents=True, exist_ok=True)
        if s.train_ids:
            os.chown(tmp, *s.train_ids)
        cwd = os.getcwd()
        os.chdir(s.mountpoint)  # relative trainer paths resolve inside the workspace
        try:
            settings = parse_train_args(args, warn=lambda _m: None)
            self._preflight("post-mount", settings)
        finally:
            os.chdir(cwd)  # never hold the mount busy past this point
        if _has_flag(s.train_args, "--output_dir"):
            raise ConfigError("`run` writes the LoRA into runs/<run-id>/out of the workspace; "
                              "drop --output_dir")
        outputs = RunOutputs.create(s.mountpoint, self.run_id, s.train_ids)
        try:
            return self._train_into(outputs, settings, args, tmp)
        finally:
            outputs.close()  # an open fd would keep the mount busy at teardown

    def _train_into(self, outputs: RunOutputs, settings: object, args: list[str],
                    tmp: Path) -> Path:
        s = self._s
        if s.train_ids:
            def here(p: Path) -> Path:
                return p if p.is_absolute() else s.mountpoint / p

            subsets = [here(sub.image_dir) for ds in settings.datasets for sub in ds.subsets]  # type: ignore[attr-defined]
            grant_group_read([here(settings.pretrained_model_name_or_path), *subsets],  # type: ignore[attr-defined]
                             root=s.mountpoint, gid=s.train_ids[1],
                             listable={p.parent for p in subsets})
        self._phase("train")
        self._audit("train_start", uid=s.train_ids[0] if s.train_ids else os.geteuid())
        started = time.time()
        code = self._counting_denials(lambda: self._spawn_trainer(args, tmp, settings))
        self._audit("train_end", exit_code=code, seconds=round(time.time() - started, 1))
        if self._contain("after_train"):
            raise TrainingError("a process of the trainer outlived it (killed); not sealed")
        if code:
            raise CHILD_ERRORS.get(code, TrainingError)(f"training failed (trainer exit {code})")
        # SECURITY: out/ becomes root's and read-only; a LoRA that is a link fails here.
        lora = outputs.take_back(settings.output_name)  # type: ignore[attr-defined]
        self._phase("seal")
        self._seal(settings, lora, args, started, outputs)
        return lora

    def _counting_denials(self, spawn: Callable[[], int]) -> int:
        """Run the trainer; with kernel/host audit, count its refused workspace accesses from
        the kernel's audit stream and record `trainer_denied_access` (a count, no path)."""
        from entrypoint.audit.denied import DeniedAccessCounter

        s = self._s
        if s.audit_mode is AuditMode.APP or not s.train_ids:
            return spawn()
        with DeniedAccessCounter(s.train_ids[0], self._auditctl.key,
                                 enabled=self._auditctl.enabled()) as counter:
            code = spawn()
        if counter.count():
            self._audit("trainer_denied_access", count=counter.count())
        return code

    def _spawn_trainer(self, args: list[str], tmp: Path, settings: object) -> int:
        from entrypoint.redact import Redactor
        from entrypoint.run.run_names import caption_lines, dataset_names

        s = self._s
        # SECURITY: whatever launches the trainer, its output passes a redactor that knows the
        # run's dataset folder names, file stems and caption lines (and the workspace and
        # cipher paths).
        redactor = Redactor([str(s.mountpoint), str(s.cipher_dir)])
        dirs = [sub.image_dir for ds in settings.datasets for sub in ds.subsets]  # type: ignore[attr-defined]
        redactor.register_names(dataset_names(dirs, s.mountpoint))
        redactor.register_literals(caption_lines(dirs, s.mountpoint))
        return self._trainer(args, cwd=s.mountpoint, tmp=tmp, ids=s.train_ids,
                             extra_env=s.extra_env, redact=[str(s.mountpoint), str(s.cipher_dir)],
                             echo=lambda line: self._echo(redactor.scrub(line)))

    def _seal(self, settings: object, lora: Path, args: list[str], started: float,
              outputs: RunOutputs) -> None:
        from secure_trainer.registry import file_sha256

        root = self._s.mountpoint
        data_files = sorted(p for ds in settings.datasets for sub in ds.subsets  # type: ignore[attr-defined]
                            for p in (root / sub.image_dir).iterdir()
                            if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES)
        hashes = sorted({file_sha256(p) for p in data_files})
        lora_sha = outputs.sha256(lora.name)  # dir fd + O_NOFOLLOW, never a path walk
        dp = self._dp_record(settings, lora)
        s = self._s
        register_sealed_run(  # every artefact of the run dir, base model, datasets, expiry
            registry_path=self._ws.registry_path, root=root, run_id=self.run_id,
            run_dir=self._ws.runs_dir / self.run_id, lora=lora,
            base_model=settings.pretrained_model_name_or_path,  # type: ignore[attr-defined]
            data_dirs=[sub.image_dir for ds in settings.datasets for sub in ds.subsets],  # type: ignore[attr-defined]
            image_hashes=hashes, governance=Governance.for_policy(
                s.policy, owner=s.owner, purpose=s.purpose, legal_basis=s.legal_basis,
                retention_days=s.retention_days))
        # The `sealed` record's sequence number goes into the manifest: a log cut off before
        # it (a valid but shorter chain) is caught by `audit verify --manifest`.
        if dp is not None:
            self._audit("dp", **{k: dp[k] for k in DP_AUDIT_FIELDS})
        seq = self._audit("sealed", lora_sha256=lora_sha, images=len(hashes))
        manifest = {"run_id": self.run_id, "config_sha256": hashlib.sha256(
            json.dumps(args).encode()).hexdigest(), "dataset_sha256": hashes,
            "lora_sha256": lora_sha, "started": round(started, 1), "sealed": round(time.time(), 1),
            "audit_seq": seq, "dp": dp}
        outputs.write_manifest(json.dumps(manifest, indent=2).encode())  # O_EXCL|O_NOFOLLOW

    @staticmethod
    def _dp_record(settings: object, lora: Path) -> dict[str, object] | None:
        """The trainer's DP record for the manifest; None for a run without DP.

        Fails closed: a run asked for DP whose trainer left no record is not sealed as private.
        """
        return Lifecycle._checked_dp(settings.dp, lora)  # type: ignore[attr-defined]

    @staticmethod
    def _checked_dp(dp: DPSettings, lora: Path) -> dict[str, object] | None:
        from secure_trainer.privacy.dp_record import read_record

        record = read_record(lora)
        if dp.enabled and record is None:
            raise TrainingError("DP was requested but the trainer wrote no DP record")
        if record is None:
            return None
        from entrypoint.run.dp_check import check_dp_record

        # SECURITY: the trainer wrote the record; seal only an ε root recomputed (else exit 7).
        return asdict(check_dp_record(record, dp))

    def _teardown(self, owns_marker: bool) -> None:
        """Undo what this run did, newest first; collect our errors and raise the first one
        (only when no other exception is already propagating). Runs with signals deferred.
        """
        failure = sys.exc_info()[1]
        if failure is not None:  # what stopped the run (type only); journaled before the mount
            try:
                self._audit("run_failed", error=type(failure).__name__,
                            exit_code=getattr(failure, "exit_code", 1))
            except SecureTrainerError:
                pass  # the teardown must go on; the journal/log error is not the run's
        errors: list[SecureTrainerError] = []

        def attempt(step: Callable[[], None]) -> None:
            try:
                step()
            except SecureTrainerError as err:
                errors.append(err)

        def remove_rules() -> None:
            outcome = self._kaudit.stop()  # before the unmount: the watches name the mountpoint
            if outcome is not None:
                self._audit(outcome.event, **outcome.fields)

        def wipe_scratch() -> None:
            tmp = self._ws.tmp_dir / self.run_id
            targets = self._wipe_targets()
            if self._mounted and self._fs.is_mounted(self._s.mountpoint):
                targets.insert(0, tmp)
            report = wipe(targets)
            if targets and targets[0] == tmp:
                shutil.rmtree(tmp, ignore_errors=True)
            self._audit("teardown", wiped_files=report.files, wiped_bytes=report.bytes)

        attempt(remove_rules)
        if owns_marker:
            attempt(wipe_scratch)
        if self._mounted:
            attempt(lambda: self._contain("teardown"))  # survivors would keep the mount busy
            attempt(lambda: self._restrict_workspace("teardown"))
            # The head after the last record goes to Vault (strict: required) before unmount.
            attempt(lambda: anchor_run(self._log, self._vault, self._s.policy, self._echo))
            attempt(self._ws.close)
        attempt(self._vault.revoke_self)
        if owns_marker and not errors:
            clear_run_marker(self._s.state_dir)
        if errors and sys.exc_info()[0] is None:
            raise errors[0]
