"""The run's output folder: `runs/<id>/` is root's, the trainer writes only into `out/`.

Layout during training: `runs/` root 0711; `runs/<id>/` root:<training gid> 0710 (the trainer
may traverse it, never list or write it); `runs/<id>/out/` the trainer's, 0700. After the
trainer exits, `take_back` makes every entry of `out/` root's and read-only (fd walk),
`runs/<id>/` goes back to 0700 root:root, and the LoRA (and its DP record) move up into
`runs/<id>/` by rename between directory fds, so a LoRA that is not a regular file fails the
seal. The supervisor then hashes the LoRA and writes `manifest.json` through the held run-dir fd.
Must never follow a link the trainer made (all through `entrypoint/fsafe.py`), never keep the
mount busy after `close`, and never put a path in an error message.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from entrypoint.errors import TrainingError, WorkspaceError
from entrypoint.fsafe import create_at, open_dir, open_regular, set_owner_mode, sha256_at, walk

__all__ = ["ADAPTER_FILES", "ADAPTER_OPTIONAL", "ADAPTER_WEIGHTS", "OUT", "RunOutputs"]

OUT = "out"
RUNS = "runs"  # coupling: Workspace.runs_dir
_DP_SUFFIX = ".dp.json"  # coupling: secure_trainer/privacy/dp_record.py RECORD_SUFFIX
# coupling: secure_trainer/llm/export.py (PEFT's file names) and llm/canary.py (canaries.json).
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_FILES = (ADAPTER_WEIGHTS, "adapter_config.json")
ADAPTER_OPTIONAL = ("adapter_model" + _DP_SUFFIX, "canaries.json")


class RunOutputs:
    """`runs/<run_id>/` of one run, held open by fd from creation to `close`."""

    def __init__(self, root: Path, run_id: str, fd: int) -> None:
        self.path = root / RUNS / run_id
        self._fd = fd

    @classmethod
    def create(cls, root: Path, run_id: str, trainer: tuple[int, int] | None) -> RunOutputs:
        """Make `runs/` root's (0711), create `runs/<run_id>/` and its `out/` for `trainer`
        (uid, gid; None: the supervisor trains as itself). Raises WorkspaceError."""
        if not run_id or "/" in run_id or run_id.startswith("."):
            raise WorkspaceError("invalid run id")
        root_fd = open_dir(root)
        try:
            runs_fd = open_dir(RUNS, dir_fd=root_fd)
        finally:
            os.close(root_fd)
        try:
            # SECURITY: a trainer-owned runs/ would let it rename or replace other runs' dirs.
            if os.geteuid() == 0:  # a non-root supervisor trains as itself (no drop)
                os.fchown(runs_fd, 0, 0)
                os.fchmod(runs_fd, 0o711)
            try:
                os.mkdir(run_id, 0o700, dir_fd=runs_fd)
            except FileExistsError:
                raise WorkspaceError("a run with this id already exists") from None
            fd = open_dir(run_id, dir_fd=runs_fd)
        finally:
            os.close(runs_fd)
        try:
            os.mkdir(OUT, 0o700, dir_fd=fd)
            if trainer is not None:
                out_fd = open_dir(OUT, dir_fd=fd)
                try:
                    os.fchown(out_fd, *trainer)
                finally:
                    os.close(out_fd)
                os.fchown(fd, os.geteuid(), trainer[1])
                os.fchmod(fd, 0o710)  # traverse for the training group, nothing more
        except BaseException:
            os.close(fd)
            raise
        return cls(root, run_id, fd)

    @property
    def out_arg(self) -> str:
        """The trainer's `--output_dir`, relative to the workspace (its cwd)."""
        return f"{RUNS}/{self.path.name}/{OUT}"

    def take_back(self, output_name: str) -> Path:
        """After the trainer exited: `out/` becomes root's and read-only, the run dir 0700,
        the LoRA and its DP record move up; returns the LoRA's path.

        Raises TrainingError when the LoRA is missing or not a regular file (a symlink, a
        fifo), WorkspaceError when an entry was swapped during the walk.
        """
        if not output_name or "/" in output_name or output_name.startswith("."):
            raise TrainingError("--output_name must be a plain file name")
        lora = f"{output_name}.safetensors"
        self._take_back((lora,), (output_name + _DP_SUFFIX,),
                        missing="training finished but wrote no LoRA")
        return self.path / lora

    def take_back_adapter(self) -> Path:
        """`take_back` for a train-llm run: the PEFT adapter (config and weights, required),
        its DP record and canary list (when written) move up; returns the weights' path.

        Raises TrainingError (missing or not a regular file), WorkspaceError (swapped entry).
        """
        self._take_back(ADAPTER_FILES, ADAPTER_OPTIONAL,
                        missing="training finished but wrote no adapter", check_optional=True)
        return self.path / ADAPTER_WEIGHTS

    def _take_back(self, required: tuple[str, ...], optional: tuple[str, ...], *,
                   missing: str, check_optional: bool = False) -> None:
        me = (os.geteuid(), os.getegid())  # root for a dropped trainer; else the user itself
        out_fd = open_dir(OUT, dir_fd=self._fd)
        moved: list[str] = []
        try:
            for entry in walk(out_fd):
                ro = 0o500 if stat.S_ISDIR(entry.st.st_mode) else 0o400
                set_owner_mode(entry.parent_fd, entry.name, entry.st, uid=me[0], gid=me[1],
                               mode=None if stat.S_ISLNK(entry.st.st_mode) else ro)
            os.fchown(out_fd, *me)
            os.fchmod(out_fd, 0o500)
            os.fchown(self._fd, *me)
            os.fchmod(self._fd, 0o700)
            for name in (*required, *optional):
                try:
                    os.rename(name, name, src_dir_fd=out_fd, dst_dir_fd=self._fd)
                except FileNotFoundError:
                    if name in required:
                        raise TrainingError(missing) from None
                    continue
                if name in required or check_optional:
                    moved.append(name)
        finally:
            os.close(out_fd)
        for name in moved:
            try:
                os.close(open_regular(self._fd, name))
            except WorkspaceError:
                what = "LoRA" if name.endswith(".safetensors") else "output"
                raise TrainingError(f"the trainer's {what} is not a regular file; "
                                    "not sealed") from None

    def write_trainer_config(self, name: str, data: bytes, gid: int | None) -> str:
        """Create `name` (0640, group `gid`) in the run dir for the trainer to read; returns
        its path relative to the workspace. The run dir is root's, so nothing can race it."""
        create_at(self._fd, name, data, mode=0o640 if gid is not None else 0o600)
        if gid is not None:
            os.chown(name, -1, gid, dir_fd=self._fd, follow_symlinks=False)
        return f"{RUNS}/{self.path.name}/{name}"

    def sha256(self, name: str) -> str:
        """sha256 of the regular file `name` in the run dir (never through a link)."""
        return sha256_at(self._fd, name)

    def write_manifest(self, data: bytes) -> None:
        """Create `manifest.json` (0600) in the run dir; an existing one fails the seal."""
        create_at(self._fd, "manifest.json", data, mode=0o600)

    def close(self) -> None:
        """Release the run-dir fd (before the unmount: an open fd keeps the mount busy)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
