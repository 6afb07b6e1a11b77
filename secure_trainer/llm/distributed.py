"""The accelerate side of train-llm: device choice and multi-process (`accelerate launch`) rules.

Single process: CUDA when present, else CPU. Under `accelerate launch` (torchrun env) the
processes form one DDP group (gloo on CPU); each optimizer step, process r trains group
k·world + r of the epoch's shuffled groups (wrapping round), DDP averages the gradients, and
only the main process reports progress and writes files. DP-SGD, canaries and checkpoints are
single-process only (their randomness and positions are per process). Never logs data.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from secure_trainer.errors import ConfigError
from secure_trainer.llm.config import LlmTrainConfig


def make_accelerator() -> Any:
    """An Accelerator (no mixed precision: bf16 is our own autocast), multi-process when
    launched that way."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    # A library call may run several times in one process (tests); keep the process group.
    AcceleratorState._reset_state(reset_partial_state=False)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    if accelerator.num_processes > 1 and "OMP_NUM_THREADS" not in os.environ:
        # Share the cores between local processes instead of oversubscribing them.
        local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes)))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))
    return accelerator


def check_multiprocess(config: LlmTrainConfig, processes: int) -> None:
    """Refuse options that are single-process only when `processes` > 1 (ConfigError)."""
    if processes <= 1:
        return
    for key, active in (("dp", config.dp), ("canaries", config.canaries > 0),
                        ("save_steps", config.save_steps > 0),
                        ("resume_from_checkpoint", config.resume_from_checkpoint is not None)):
        if active:
            raise ConfigError(f"option '{key}' runs on one process only (launch without "
                              "accelerate, or drop the option)")


def group_for(groups: int, step_in_epoch: int, rank: int, world: int) -> int:
    """Index of the group process `rank` trains at `step_in_epoch` (wrapping round)."""
    return (step_in_epoch * world + rank) % groups
