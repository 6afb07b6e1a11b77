"""Our own training progress display: step/total, epoch, loss, s/step and ETA — nothing else.

Two renderers behind one `ProgressSink` protocol: a rich live bar on a terminal, and a plain
line every N steps when the stream is not a TTY (logs, CI, containers).
SECURITY: never shows a path, file name, caption or prompt — the sink only ever receives numbers.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Protocol, TextIO


@dataclass(frozen=True)
class StepInfo:
    """What one finished optimizer step reports; numbers only by construction."""

    step: int
    total_steps: int
    epoch: int
    total_epochs: int
    loss: float
    seconds_per_step: float


@dataclass(frozen=True)
class RunSummary:
    """End-of-run figures for the one-line summary."""

    steps: int
    epochs: int
    final_loss: float
    seconds_per_step: float
    wall_seconds: float
    peak_rss_bytes: int
    output_file: str  # base name of the final LoRA (the user's --output_name), never a data path


class ProgressSink(Protocol):
    """Receives progress from the training loop (main process only)."""

    def start(self, *, total_steps: int, total_epochs: int, initial_step: int) -> None:
        """Training is about to run steps initial_step+1 .. total_steps."""

    def update(self, info: StepInfo) -> None:
        """One optimizer step finished."""

    def close(self) -> None:
        """Training ended (success or error); release the terminal."""


def format_eta(seconds: float) -> str:
    """`h:mm:ss` (or `m:ss` under an hour) for a non-negative duration."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_step(info: StepInfo) -> str:
    """The plain progress line for one step."""
    eta = format_eta(info.seconds_per_step * max(0, info.total_steps - info.step))
    return (f"step {info.step}/{info.total_steps} epoch {info.epoch}/{info.total_epochs} "
            f"loss {info.loss:.4f} {info.seconds_per_step:.2f} s/step eta {eta}")


def format_summary(summary: RunSummary) -> str:
    """The final one-line summary."""
    return (f"trained {summary.steps} steps / {summary.epochs} epochs in "
            f"{format_eta(summary.wall_seconds)}: final loss {summary.final_loss:.4f}, "
            f"{summary.seconds_per_step:.3f} s/step, peak RSS "
            f"{summary.peak_rss_bytes / 2**20:.0f} MiB, saved {summary.output_file}")


class NullProgress:
    """Shows nothing (quiet mode, non-main processes)."""

    def start(self, *, total_steps: int, total_epochs: int, initial_step: int) -> None:
        """Ignore."""

    def update(self, info: StepInfo) -> None:
        """Ignore."""

    def close(self) -> None:
        """Ignore."""


class PlainProgress:
    """One line every `every` steps (and on the last step) to `stream`."""

    def __init__(self, stream: TextIO | None = None, *, every: int = 10) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._every = max(1, every)

    def start(self, *, total_steps: int, total_epochs: int, initial_step: int) -> None:
        """Print a start line with the plan."""
        resumed = f" (resuming after step {initial_step})" if initial_step else ""
        print(f"training {total_steps} steps, {total_epochs} epochs{resumed}",
              file=self._stream, flush=True)

    def update(self, info: StepInfo) -> None:
        """Print every N-th step and the last one."""
        if info.step % self._every == 0 or info.step == info.total_steps:
            print(format_step(info), file=self._stream, flush=True)

    def close(self) -> None:
        """Nothing to release."""


class RichProgress:
    """A live rich bar on a terminal; columns carry numbers only."""

    def __init__(self, stream: TextIO | None = None) -> None:
        from rich.console import Console

        self._console = Console(file=stream if stream is not None else sys.stderr)
        self._progress: object | None = None
        self._task: object | None = None

    def start(self, *, total_steps: int, total_epochs: int, initial_step: int) -> None:
        """Open the live bar."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        progress = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[stats]}"), console=self._console,
                            transient=False)
        self._task = progress.add_task("train", total=total_steps, completed=initial_step,
                                       stats=f"epoch -/{total_epochs}")
        progress.start()
        self._progress = progress

    def update(self, info: StepInfo) -> None:
        """Advance the bar to `info.step`."""
        from rich.progress import Progress

        if not isinstance(self._progress, Progress):
            return
        eta = format_eta(info.seconds_per_step * max(0, info.total_steps - info.step))
        stats = (f"epoch {info.epoch}/{info.total_epochs} loss {info.loss:.4f} "
                 f"{info.seconds_per_step:.2f} s/step eta {eta}")
        self._progress.update(self._task, completed=info.step, stats=stats)  # type: ignore[arg-type]

    def close(self) -> None:
        """Stop the live display."""
        from rich.progress import Progress

        if isinstance(self._progress, Progress):
            self._progress.stop()
        self._progress = None


def make_progress(stream: TextIO | None = None, *, quiet: bool = False,
                  every: int = 10) -> ProgressSink:
    """Pick a renderer: nothing when quiet, rich on a TTY, plain lines otherwise."""
    if quiet:
        return NullProgress()
    target = stream if stream is not None else sys.stderr
    if target.isatty():
        return RichProgress(target)
    return PlainProgress(target, every=every)


class StepTimer:
    """Steady-state seconds per step: the mean over steps after the first `skip` (warm-up)."""

    def __init__(self, skip: int = 1) -> None:
        self._skip = skip
        self._seen = 0
        self._last = time.perf_counter()
        self._total = 0.0
        self._counted = 0
        self._all = 0.0

    def tick(self) -> float:
        """Mark a finished step; return the current s/step estimate."""
        now = time.perf_counter()
        elapsed = now - self._last
        self._last = now
        self._seen += 1
        self._all += elapsed
        if self._seen > self._skip:
            self._total += elapsed
            self._counted += 1
        return self.seconds_per_step

    @property
    def seconds_per_step(self) -> float:
        """Mean over counted steps, or over all steps while still warming up."""
        if self._counted:
            return self._total / self._counted
        return self._all / self._seen if self._seen else 0.0
