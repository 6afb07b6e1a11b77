"""The training loop's public types: its result, the hook protocol, the parts hooks may wrap.

coupling: `train_loop` re-exports these; the DP feature (privacy/) implements `TrainHooks`.
Never holds data paths or captions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

# One epoch's micro-batches (dataset.Batch objects); `images` may be None, the loop loads them.
BatchSampler = Callable[[int], Iterable[Any]]


@dataclass(frozen=True)
class TrainResult:
    """What a finished run produced (main process; other processes get the same numbers)."""

    lora_path: Path | None
    """The final `<output_name>.safetensors` (None on non-main processes)."""
    steps: int
    epochs: int
    losses: list[float]
    """Mean loss of every optimizer step run by this invocation (resumed runs: from the resume)."""
    final_loss: float
    seconds_per_step: float
    """Steady state: mean over steps after the first (warm-up) one."""
    state_dir: Path | None
    """The last state directory written, if any."""
    peak_rss_bytes: int
    wall_seconds: float = 0.0
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class ModelParts:
    """The live training objects, handed to `TrainHooks.wrap`; a hook may replace `unet`
    or `text_encoder` with a wrapper module (e.g. Opacus GradSampleModule) in place."""

    unet: torch.nn.Module
    text_encoder: torch.nn.Module
    vae: torch.nn.Module
    handles: Any
    """lora.LoraHandles."""
    params: list[torch.nn.Parameter]
    """Every parameter the optimizer updates."""
    device: torch.device


@runtime_checkable
class TrainHooks(Protocol):
    """Optional extension points; every method is optional (looked up with getattr).

    - `wrap(parts, optimizer, dataset) -> (optimizer, sampler | None)`: called once after the
      optimizer is built and before training; may wrap the model parts (in `parts`) and
      return a replacement optimizer and/or a per-epoch batch sampler.
    - `owns_clipping: bool` attribute: True ⇒ the loop skips max_grad_norm clipping (DP-SGD
      clips per sample itself).
    - `on_step(step, loss)`: after every optimizer step.
    - `extra_metadata() -> dict[str, str]`: merged into the exported LoRA's metadata.
    - `should_stop() -> bool`: checked after every optimizer step; True ends training early
      (the final LoRA is still written).
    - `run_batch(ctx, dataset, batch, epoch, number) -> float`: replaces the loop's forward +
      backward of one (sampler) batch; leaves the gradients in `.grad`, returns the loss.
    - `on_end(lora_path)`: after the final LoRA is written (main process).
    """


def hook(hooks: object | None, name: str) -> Callable[..., Any] | None:
    """The bound hook method `name`, or None when absent."""
    if hooks is None:
        return None
    fn = getattr(hooks, name, None)
    return fn if callable(fn) else None
