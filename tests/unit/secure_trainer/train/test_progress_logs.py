"""Progress display (numbers only, plain lines every N steps) and quiet logging / env hardening."""

from __future__ import annotations

import io
import logging

from secure_trainer.logs import HARDENED_ENV, configure_quiet_logging, harden_env
from secure_trainer.train.progress import (
    PlainProgress,
    RunSummary,
    StepInfo,
    StepTimer,
    format_eta,
    format_summary,
    make_progress,
)


def _info(step: int) -> StepInfo:
    return StepInfo(step=step, total_steps=25, epoch=1, total_epochs=2, loss=0.5, seconds_per_step=2.0)


def test_plain_progress_prints_every_n_and_last() -> None:
    stream = io.StringIO()
    sink = PlainProgress(stream, every=10)
    sink.start(total_steps=25, total_epochs=2, initial_step=0)
    for step in range(1, 26):
        sink.update(_info(step))
    lines = stream.getvalue().splitlines()
    assert lines[0] == "training 25 steps, 2 epochs"
    assert [ln.split()[1] for ln in lines[1:]] == ["10/25", "20/25", "25/25"]
    assert lines[1] == "step 10/25 epoch 1/2 loss 0.5000 2.00 s/step eta 0:30"


def test_non_tty_gets_plain_and_quiet_gets_nothing() -> None:
    assert isinstance(make_progress(io.StringIO()), PlainProgress)
    stream = io.StringIO()
    sink = make_progress(stream, quiet=True)
    sink.start(total_steps=1, total_epochs=1, initial_step=0)
    sink.update(_info(1))
    assert stream.getvalue() == ""


def test_summary_and_eta_formats() -> None:
    assert format_eta(3725) == "1:02:05" and format_eta(65) == "1:05"
    line = format_summary(RunSummary(steps=30, epochs=1, final_loss=0.25, seconds_per_step=0.2,
                                     wall_seconds=12, peak_rss_bytes=512 * 2**20,
                                     output_file="x.safetensors"))
    assert line == ("trained 30 steps / 1 epochs in 0:12: final loss 0.2500, 0.200 s/step, "
                    "peak RSS 512 MiB, saved x.safetensors")


def test_step_timer_skips_warmup() -> None:
    timer = StepTimer(skip=1)
    timer._last -= 10.0  # a slow first step
    timer.tick()
    timer.tick()
    assert timer.seconds_per_step < 1.0


def test_harden_env_overrides_inherited_values() -> None:
    env = {"HF_HUB_OFFLINE": "0", "KEEP": "x"}
    harden_env(env)
    assert env["HF_HUB_OFFLINE"] == "1" and env["DO_NOT_TRACK"] == "1" and env["KEEP"] == "x"
    assert all(env[k] == v for k, v in HARDENED_ENV.items())


def test_quiet_logging_caps_libraries_and_is_idempotent() -> None:
    logger = configure_quiet_logging("DEBUG")
    configure_quiet_logging("DEBUG")
    assert logger.level == logging.DEBUG
    assert len([h for h in logger.handlers if getattr(h, "_secure_trainer", False)]) == 1
    assert logging.getLogger("diffusers").level >= logging.ERROR
    assert logging.getLogger("transformers").level >= logging.ERROR
    assert logging.getLogger("accelerate").level >= logging.WARNING
    from diffusers.utils import logging as dlog

    assert not dlog.is_progress_bar_enabled()
    configure_quiet_logging("WARNING")
