"""Training states of train-llm (`save_steps`, `resume_from_checkpoint`) on train/state.py.

A state is `output_dir/checkpoint-<step>/`: LoRA weights, AdamW and scheduler state, RNG states
and the position (epoch, micro-batch groups done in it, step, seed) — safetensors and JSON,
never pickle (train/state.py). The shuffle order is a pure function of (seed, epoch), so a
resumed run replays exactly the batches the original would have run: bit-identical on the same
CPU and thread count. Never puts a path in a message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from secure_trainer.errors import ConfigError
from secure_trainer.train.state import Position, apply_state, read_state, restore_rng, save_state

PREFIX = "checkpoint-"


def lora_parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """The trainable (LoRA) parameters by name."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def position_after(step: int, epoch: int, groups_done: int, groups_in_epoch: int,
                   seed: int) -> Position:
    """Where to continue after `groups_done` of `groups_in_epoch` groups of `epoch`."""
    if groups_done >= groups_in_epoch:
        return Position(global_step=step, next_epoch=epoch + 1, skip_batches=0, seed=seed)
    return Position(global_step=step, next_epoch=epoch, skip_batches=groups_done, seed=seed)


def save(output_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
         scheduler: Any, position: Position) -> Path:
    """Write `checkpoint-<step>` atomically. Raises TrainingError (train/state.py)."""
    return save_state(output_dir / f"{PREFIX}{position.global_step}",
                      lora_params=lora_parameters(model), optimizer=optimizer,
                      scheduler=scheduler, position=position)


def resume(directory: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
           scheduler: Any, seed: int) -> Position:
    """Load a checkpoint into model/optimizer/scheduler and restore the RNG states last.

    Raises ConfigError when it is not a matching state of this config, DataRejected when
    malformed (train/state.py).
    """
    loaded = read_state(directory)
    if loaded.position.seed != seed:
        raise ConfigError("option 'seed' differs from the checkpoint's (resume with the same "
                          "config)")
    position = apply_state(loaded, lora_params=lora_parameters(model), optimizer=optimizer,
                           scheduler=scheduler)
    restore_rng(loaded)
    return position
