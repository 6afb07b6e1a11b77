"""The `train-llm` run: load, tokenize, add LoRA, optimize (plain or user-level DP), export.

Plain mode: seeded shuffled batches, gradient accumulation, the mean token loss, global
gradient clipping at max_grad_norm. DP mode: one `UnitDPSGD` step per optimizer step (dp.py).
Both use AdamW and the configured scheduler/warmup. Progress sinks receive numbers only.
Never logs or returns text, a path or a per-record figure.
"""

from __future__ import annotations

import contextlib
import math
import random
import resource
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from secure_trainer.errors import DataRejected, TrainingError
from secure_trainer.llm import canary as canaries_mod
from secure_trainer.llm import checkpoint
from secure_trainer.llm.adapter import add_lora
from secure_trainer.llm.batches import collate, epoch_batches, token_mean_loss
from secure_trainer.llm.config import LlmTrainConfig
from secure_trainer.llm.data import read_jsonl
from secure_trainer.llm.distributed import check_multiprocess, group_for, make_accelerator
from secure_trainer.llm.dp import UnitDPSGD, plan_for
from secure_trainer.llm.export import save_adapter
from secure_trainer.llm.metadata import adapter_metadata
from secure_trainer.llm.model import load_lm
from secure_trainer.llm.template import Encoded, encode, resolve_template
from secure_trainer.llm.units import group_units, sample_rate
from secure_trainer.privacy.dp_record import DPRecord, write_record
from secure_trainer.train.progress import NullProgress, ProgressSink, StepInfo, StepTimer

Warn = Callable[[str], None]


@dataclass(frozen=True)
class LlmTrainResult:
    """Figures of a finished run (numbers and the adapter path, which the CLI never prints)."""

    steps: int
    epochs: int
    final_loss: float
    seconds_per_step: float
    wall_seconds: float
    peak_rss_bytes: int
    adapter_dir: Path
    epsilon: float | None = None
    delta: float | None = None
    budget_exhausted: bool = False
    is_main: bool = True
    """False in the non-main processes of a multi-process launch (they write nothing)."""


def _autocast(bf16: bool, device: torch.device) -> Callable[[], AbstractContextManager[object]]:
    if bf16:
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def _steps_per_epoch(config: LlmTrainConfig, examples: int, units: int, world: int) -> int:
    if config.dp:
        return max(1, math.ceil(1.0 / sample_rate(config.per_device_train_batch_size, units)))
    batches = math.ceil(examples / config.per_device_train_batch_size)
    return max(1, math.ceil(math.ceil(batches / config.gradient_accumulation_steps) / world))


def _scheduler(config: LlmTrainConfig, optimizer: torch.optim.Optimizer, total: int) -> Any:
    from transformers import get_scheduler

    warmup = config.warmup_steps or math.ceil(config.warmup_ratio * total)
    return get_scheduler(config.lr_scheduler_type, optimizer, num_warmup_steps=warmup,
                         num_training_steps=total)


def prepare_examples(config: LlmTrainConfig, tokenizer: Any, warn: Warn,
                     canaries: list[canaries_mod.Canary]) -> tuple[list[Encoded], list[str | None],
                                                                   str]:
    """Read, plant canaries, tokenize; drop examples with no response token left after the
    cutoff (warned as a count). Raises DataRejected when none is left."""
    records = read_jsonl(config.dataset_path, subject_field=config.subject_field,
                         max_samples=config.max_samples)
    records = canaries_mod.plant(records, canaries)
    template = resolve_template(config.template, tokenizer)
    encoded, subjects = [], []
    for record in records:
        example = encode(tokenizer, record.turns, template, config.cutoff_len)
        if example.trained_tokens:
            encoded.append(example)
            subjects.append(record.subject)
    if len(encoded) < len(records):
        warn(f"{len(records) - len(encoded)} records have no response token within "
             "cutoff_len and were skipped")
    if not encoded:
        raise DataRejected("no record has a response token within cutoff_len")
    return encoded, subjects, template


def train_llm(config: LlmTrainConfig, *, progress: ProgressSink, warn: Warn,
              canary_rng: random.Random | None = None) -> LlmTrainResult:
    """Run one fine-tuning as configured; write the adapter (and DP record, canary list).

    `canary_rng` draws the canaries (default: the OS CSPRNG; tests pass a seeded one).

    Raises ConfigError, DataRejected (model/data refused) and TrainingError (non-finite loss,
    unwritable output).
    """
    started = time.perf_counter()
    accelerator = make_accelerator()
    world, rank = accelerator.num_processes, accelerator.process_index
    check_multiprocess(config, world)
    if not accelerator.is_main_process:
        progress = NullProgress()
    _check_output_dir(config)
    torch.manual_seed(config.seed)
    lm = load_lm(config.model_name_or_path)
    planted = canaries_mod.make_canaries(config.canaries, canary_rng) if config.canaries else []
    encoded, subjects, template = prepare_examples(config, lm.tokenizer, warn, planted)
    units = group_units(subjects, config.dp_unit if config.dp else "record")
    model = add_lora(lm.model, config)
    if config.gradient_checkpointing:
        # Non-reentrant: works with frozen inputs (LoRA) without enable_input_require_grads.
        model.base_model.model.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False})
    model.to(accelerator.device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    forward = accelerator.prepare_model(model) if world > 1 else model  # DDP wrapper
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    per_epoch = _steps_per_epoch(config, len(encoded), len(units), world)
    total = config.max_steps if config.max_steps > 0 else math.ceil(
        config.num_train_epochs * per_epoch)
    scheduler = _scheduler(config, optimizer, total)
    dp = UnitDPSGD(plan_for(config, units=len(units), steps=total), units,
                   unit_name=config.dp_unit) if config.dp else None
    autocast = _autocast(config.bf16, accelerator.device)
    pad_id = int(lm.tokenizer.pad_token_id)
    epochs = max(1, math.ceil(total / per_epoch))
    timer = StepTimer()
    step, loss, epoch, skip = 0, float("nan"), 0, 0
    if config.resume_from_checkpoint is not None:
        # Last thing before the loop: restore_rng must follow everything that draws.
        position = checkpoint.resume(config.resume_from_checkpoint, model, optimizer, scheduler,
                                     config.seed)
        step, epoch, skip = position.global_step, position.next_epoch - 1, position.skip_batches
    progress.start(total_steps=total, total_epochs=epochs, initial_step=step)
    try:
        while step < total and not (dp is not None and dp.exhausted()):
            epoch += 1
            if dp is not None:
                for _ in range(per_epoch):
                    if step >= total or dp.exhausted():
                        break
                    optimizer.zero_grad(set_to_none=True)
                    loss = dp.step_gradient(model, params, encoded, pad_id, autocast)
                    step = _finish(optimizer, scheduler, step, total, epoch, epochs, loss,
                                   timer, progress)
                continue
            batches = list(epoch_batches(len(encoded), config.per_device_train_batch_size,
                                         config.seed, epoch))
            accumulate = config.gradient_accumulation_steps
            groups = [batches[i:i + accumulate] for i in range(0, len(batches), accumulate)]
            for done in range(skip + 1, per_epoch + 1):
                if step >= total:
                    break
                group = groups[group_for(len(groups), done - 1, rank, world)]
                optimizer.zero_grad(set_to_none=True)
                loss = 0.0
                for indices in group:
                    with autocast():
                        part = token_mean_loss(forward, collate([encoded[i] for i in indices],
                                                                pad_id)) / len(group)
                    accelerator.backward(part)
                    loss += float(part.detach())
                if not math.isfinite(loss):
                    raise TrainingError("the loss is not finite (lower learning_rate)")
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                step = _finish(optimizer, scheduler, step, total, epoch, epochs, loss, timer,
                               progress)
                if config.save_steps and step % config.save_steps == 0 and step < total:
                    checkpoint.save(config.output_dir, model, optimizer, scheduler,
                                    checkpoint.position_after(step, epoch, done, per_epoch,
                                                              config.seed))
            skip = 0
    finally:
        progress.close()
    record = dp.record() if dp is not None else None
    model.eval()
    if not accelerator.is_main_process:
        return _result(config, step, epoch, loss, timer, started, None, is_main=False)
    save_adapter(model, config.output_dir, adapter_metadata(config, template, record))
    if record is not None:
        write_record(config.output_dir / "adapter_model.safetensors", record)
    if planted:
        canaries_mod.write_sidecar(config.output_dir, planted, template)
    return _result(config, step, epoch, loss, timer, started, record, is_main=True)


def _result(config: LlmTrainConfig, step: int, epoch: int, loss: float, timer: StepTimer,
            started: float, record: DPRecord | None, *, is_main: bool) -> LlmTrainResult:
    return LlmTrainResult(
        steps=step, epochs=epoch, final_loss=loss, seconds_per_step=timer.seconds_per_step,
        wall_seconds=time.perf_counter() - started,
        peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        adapter_dir=config.output_dir,
        epsilon=record.epsilon if record is not None else None,
        delta=record.delta if record is not None else None,
        budget_exhausted=record.budget_exhausted if record is not None else False,
        is_main=is_main)


def _check_output_dir(config: LlmTrainConfig) -> None:
    """Refuse to overwrite an adapter unless asked; drop the old run's sidecars when asked."""
    from secure_trainer.errors import ConfigError
    from secure_trainer.llm.export import WEIGHTS_FILE

    out = config.output_dir
    if not (out / WEIGHTS_FILE).exists():
        return
    if not config.overwrite_output_dir:
        raise ConfigError("option 'output_dir' already holds an adapter; set "
                          "overwrite_output_dir: true to replace it")
    # A stale DP record or canary list would describe the old adapter, not the new one.
    for stale in ("adapter_model.dp.json", canaries_mod.SIDECAR):
        (out / stale).unlink(missing_ok=True)


def _finish(optimizer: torch.optim.Optimizer, scheduler: Any, step: int, total: int,
            epoch: int, epochs: int, loss: float, timer: StepTimer,
            progress: ProgressSink) -> int:
    optimizer.step()
    scheduler.step()
    step += 1
    progress.update(StepInfo(step=step, total_steps=total, epoch=epoch, total_epochs=epochs,
                             loss=loss if math.isfinite(loss) else 0.0,
                             seconds_per_step=timer.tick()))
    return step

