"""`run --trainer llm`: the same envelope around `train-llm` (entrypoint/run/llm_job.py).

`LlmPhases` holds the language-model train and seal phases of `Lifecycle`, which inherits them
(moved out of entrypoint/run/lifecycle.py unchanged). It uses only what `Lifecycle` sets up:
settings, workspace, audit, trainer launcher, containment and the DP check.
SECURITY: the child reads exactly the config the policy judged, from the root-owned run dir;
the dataset's folder and file names never reach the terminal; the adapter is taken back and
hashed through directory fds (never a path walk).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from entrypoint.errors import TrainingError
from entrypoint.run.dp_check import DP_AUDIT_FIELDS
from entrypoint.run.outputs import RunOutputs
from entrypoint.run.seal import Governance, register_sealed_run
from entrypoint.run.settings import RunSettings
from entrypoint.run.trainer_child import CHILD_ERRORS, TrainerSpawner
from entrypoint.workspace.gocryptfs import Workspace
from entrypoint.workspace.grants import grant_group_read

if TYPE_CHECKING:
    from secure_trainer.llm.config import LlmTrainConfig
    from secure_trainer.settings import DPSettings

__all__ = ["LlmPhases"]


class LlmPhases:
    """The `--trainer llm` phases; mixed into `Lifecycle`, which provides these members."""

    _s: RunSettings
    _ws: Workspace
    _trainer: TrainerSpawner
    _echo: Callable[[str], None]
    run_id: str

    if TYPE_CHECKING:  # provided by Lifecycle
        def _audit(self, event: str, **fields: object) -> int | None: ...
        def _phase(self, name: str) -> None: ...
        def _preflight(self, phase: str, train: object | None,
                       log_level: str | None = None) -> None: ...
        def _contain(self, when: str) -> int: ...
        def _counting_denials(self, spawn: Callable[[], int]) -> int: ...
        @staticmethod
        def _checked_dp(dp: DPSettings, lora: Path) -> dict[str, object] | None: ...

    def _here(self, path: Path) -> Path:
        return path if path.is_absolute() else self._s.mountpoint / path

    def _train_and_seal_llm(self) -> Path:
        from entrypoint.run.llm_job import CONFIG_NAME, LlmJob, refusals

        s = self._s
        job = LlmJob.parse(s.train_args)  # the YAML path is the caller's (read before chdir)
        run_out = f"runs/{self.run_id}/out"  # coupling: RunOutputs.out_arg
        tmp = self._ws.tmp_dir / self.run_id
        tmp.mkdir(parents=True, exist_ok=True)
        if s.train_ids:
            os.chown(tmp, *s.train_ids)
        cwd = os.getcwd()
        os.chdir(s.mountpoint)  # relative config paths resolve inside the workspace
        try:
            config = job.config(run_out)
            self._preflight("post-mount", config, job.log_level)
        finally:
            os.chdir(cwd)  # never hold the mount busy past this point
        refusals(config, user_output=job.user_output)
        outputs = RunOutputs.create(s.mountpoint, self.run_id, s.train_ids)
        try:
            # The child reads exactly the config the policy judged, from the root-owned run dir.
            text = job.child_yaml(run_out)
            rel = outputs.write_trainer_config(CONFIG_NAME, text,
                                               s.train_ids[1] if s.train_ids else None)
            args = job.child_args(rel, job.log_level or s.log_level)
            return self._train_llm_into(outputs, config, args, tmp,
                                        hashlib.sha256(text).hexdigest())
        finally:
            outputs.close()  # an open fd would keep the mount busy at teardown

    def _train_llm_into(self, outputs: RunOutputs, config: LlmTrainConfig, args: list[str],
                        tmp: Path, config_sha: str) -> Path:
        from entrypoint.redact import Redactor
        from entrypoint.run.run_names import dataset_names

        s = self._s
        data = self._here(config.dataset_path)
        if s.train_ids:  # the model folder and the one JSONL file, nothing else
            grant_group_read([self._here(config.model_name_or_path), data],
                             root=s.mountpoint, gid=s.train_ids[1])
        # SECURITY: the dataset's folder names and file names never reach the terminal.
        redactor = Redactor([str(s.mountpoint), str(s.cipher_dir)])
        redactor.register_names(dataset_names([data.parent], s.mountpoint))
        self._phase("train")
        self._audit("train_start", uid=s.train_ids[0] if s.train_ids else os.geteuid(),
                    trainer="train-llm")
        started = time.time()
        code = self._counting_denials(lambda: self._trainer(
            args, cwd=s.mountpoint, tmp=tmp, ids=s.train_ids, extra_env=s.extra_env,
            redact=[str(s.mountpoint), str(s.cipher_dir)],
            echo=lambda line: self._echo(redactor.scrub(line)), command="train-llm"))
        self._audit("train_end", exit_code=code, seconds=round(time.time() - started, 1))
        if self._contain("after_train"):
            raise TrainingError("a process of the trainer outlived it (killed); not sealed")
        if code:
            raise CHILD_ERRORS.get(code, TrainingError)(f"training failed (trainer exit {code})")
        # SECURITY: out/ becomes root's and read-only; an adapter file that is a link fails here.
        adapter = outputs.take_back_adapter()
        self._phase("seal")
        self._seal_llm(config, adapter, data, started, outputs, config_sha)
        return adapter

    def _seal_llm(self, config: LlmTrainConfig, adapter: Path, data: Path, started: float,
                  outputs: RunOutputs, config_sha: str) -> None:
        from entrypoint.run.llm_job import dp_settings
        from secure_trainer.registry import file_sha256, jsonl_record_hashes

        s = self._s
        try:
            data_sha = file_sha256(data)
            # Lineage per record: `registry erase --subject` finds runs on a subject's records.
            record_hashes = jsonl_record_hashes(data)
        except OSError:
            raise TrainingError("the dataset could not be hashed for the seal") from None
        adapter_sha = outputs.sha256(adapter.name)  # dir fd + O_NOFOLLOW, never a path walk
        dp = self._checked_dp(dp_settings(config), adapter)
        register_sealed_run(
            registry_path=self._ws.registry_path, root=s.mountpoint, run_id=self.run_id,
            run_dir=self._ws.runs_dir / self.run_id, lora=adapter,
            base_model=config.model_name_or_path, data_dirs=[data.parent],
            image_hashes=[data_sha, *record_hashes], governance=Governance.for_policy(
                s.policy, owner=s.owner, purpose=s.purpose, legal_basis=s.legal_basis,
                retention_days=s.retention_days))
        if dp is not None:
            self._audit("dp", **{k: dp[k] for k in DP_AUDIT_FIELDS},
                        privacy_unit=dp["privacy_unit"])
        seq = self._audit("sealed", lora_sha256=adapter_sha, trainer="train-llm")
        manifest = {"run_id": self.run_id, "trainer": "train-llm", "config_sha256": config_sha,
                    "dataset_sha256": [data_sha], "lora_sha256": adapter_sha,
                    "started": round(started, 1), "sealed": round(time.time(), 1),
                    "audit_seq": seq, "dp": dp}
        outputs.write_manifest(json.dumps(manifest, indent=2).encode())  # O_EXCL|O_NOFOLLOW
