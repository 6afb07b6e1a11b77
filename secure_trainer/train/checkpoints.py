"""What a run writes: LoRA files under Kohya's names, state directories, TensorBoard scalars.

Only the main process calls into this module. LoRA files go through export.save_lora (atomic,
metadata redacted by default); TensorBoard receives loss and learning-rate scalars only.
SECURITY: nothing here writes captions, data paths or file names into any output.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from secure_trainer.errors import TrainingError
from secure_trainer.kohya import export
from secure_trainer.settings import TrainSettings
from secure_trainer.train.state import Position, save_state, state_dir_name


def lora_file_name(output_name: str, *, epoch: int | None = None, step: int | None = None) -> str:
    """`<name>-<epoch:06d>.safetensors`, `<name>-step<step:08d>.safetensors` or `<name>.safetensors`."""
    if epoch is not None:
        return f"{output_name}-{epoch:06d}.safetensors"
    if step is not None:
        return f"{output_name}-step{step:08d}.safetensors"
    return f"{output_name}.safetensors"


def lora_state_params(handles: Any) -> dict[str, torch.nn.Parameter]:
    """Every LoRA parameter by Kohya tensor name (both parts), for state save/restore."""
    out: dict[str, torch.nn.Parameter] = {}
    for part in ("unet", "text_encoder", "text_encoder_2"):
        out.update(dict(handles.named_params(part)))
    return out


@dataclass
class Writer:
    """Writes the run's outputs; holds the run's constant metadata inputs."""

    settings: TrainSettings
    handles: Any
    training_info: dict[str, Any]
    extra_metadata: dict[str, str] = field(default_factory=dict)
    last_state_dir: Path | None = None

    def __post_init__(self) -> None:
        try:
            self.settings.output_dir.mkdir(parents=True, exist_ok=True)
        except OSError:
            raise TrainingError("could not create output_dir (check permissions)") from None

    def save_lora(self, *, steps: int, epoch: int, file_epoch: int | None = None,
                  file_step: int | None = None) -> Path:
        """Export the current adapters to the Kohya-named file; return its path."""
        name = lora_file_name(self.settings.output_name, epoch=file_epoch, step=file_step)
        path = self.settings.output_dir / name
        info = dict(self.training_info)
        info.update(steps=steps, epoch=epoch, training_finished_at=int(time.time()))
        if self.extra_metadata:
            info["extra"] = dict(self.extra_metadata)
        metadata = export.build_metadata(self.settings, mode=self.settings.metadata,
                                         training_info=info)
        tensors = export.kohya_state_dict(self.handles,
                                          export.save_dtype(self.settings.save_precision))
        export.save_lora(path, tensors, metadata)
        return path

    def save_state(self, *, optimizer: Any, scheduler: Any, position: Position,
                   epoch: int | None = None, step: int | None = None) -> Path:
        """Write `<name>-…-state/` for the given epoch or step (neither ⇒ end-of-training)."""
        directory = self.settings.output_dir / state_dir_name(self.settings.output_name,
                                                              epoch=epoch, step=step)
        self.last_state_dir = save_state(directory, lora_params=lora_state_params(self.handles),
                                         optimizer=optimizer, scheduler=scheduler,
                                         position=position)
        return self.last_state_dir


class ScalarLog:
    """TensorBoard scalars (loss, lr) under `<logging_dir>/<log_prefix><YYYYmmddHHMMSS>/`."""

    def __init__(self, settings: TrainSettings) -> None:
        self._writer: Any = None
        if settings.logging_dir is None:
            return
        # tensorboardX writes the same event files without tensorboard's web server (grpcio,
        # werkzeug), so the hardened image carries no HTTP stack.
        from tensorboardX import SummaryWriter

        run = f"{settings.log_prefix or ''}{time.strftime('%Y%m%d%H%M%S')}"
        try:
            self._writer = SummaryWriter(log_dir=str(settings.logging_dir / run))
        except OSError:
            raise TrainingError("could not create logging_dir (check permissions)") from None

    def log(self, step: int, loss: float, average: float, lrs: dict[str, float]) -> None:
        """Record one optimizer step (Kohya's tag names)."""
        if self._writer is None:
            return
        self._writer.add_scalar("loss/current", loss, step)
        self._writer.add_scalar("loss/average", average, step)
        for name, lr in lrs.items():
            tag = "lr/unet" if name == "unet" else "lr/textencoder" if name == "text_encoder" else f"lr/{name}"
            self._writer.add_scalar(tag, lr, step)

    def close(self) -> None:
        """Flush and close the event file."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
