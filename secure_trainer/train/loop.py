"""The LoRA training loop: epochs, gradient accumulation, clipping, saves, resume, multi-process.

`train(settings)` is the one entry point. Determinism: the dataset order is a function of
(seed, epoch); each micro-batch's noise/timesteps/VAE samples come from generators seeded by
(seed, epoch, batch number); global RNGs are reseeded at every epoch start and saved with the
state — so an interrupted run resumed from its state produces the same LoRA bit for bit on the
same hardware. Multi-process (accelerate launch): batches are dealt round-robin, DDP averages
gradients, only the main process writes files.
SECURITY: the loop reports numbers only (progress, TensorBoard); it never logs captions or paths.
"""

from __future__ import annotations

import math
import resource
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

from secure_trainer.data.latent_cache import LatentCache
from secure_trainer.data.prefetch import prefetched
from secure_trainer.errors import TrainingError
from secure_trainer.logs import get_logger
from secure_trainer.settings import TrainSettings
from secure_trainer.train import optim
from secure_trainer.train.checkpoints import ScalarLog, Writer, lora_state_params
from secure_trainer.train.noise import derive_seed
from secure_trainer.train.progress import NullProgress, ProgressSink, StepInfo, StepTimer
from secure_trainer.train.setup import (
    Plan,
    build_dataset,
    build_model,
    cache_allowed,
    fill_cache,
    make_accelerator,
    make_plan,
    new_seed,
    noise_settings,
    seed_everything,
    weight_dtype,
)
from secure_trainer.train.state import LoadedState, Position, apply_state, read_state, restore_rng
from secure_trainer.train.step import (
    StepContext,
    batch_loss,
    batch_tensor,
    decode_batch_images,
    sdxl_context,
)
from secure_trainer.train.types import BatchSampler, ModelParts, TrainHooks, TrainResult, hook

__all__ = ["ModelParts", "ProgressSink", "TrainHooks", "TrainResult", "train"]

EPOCH_STREAM = 0xE90C
PREFETCH_DEPTH = 2  # decoded batches buffered ahead of the step (bounded memory)


def _epoch_batches(dataset: Any, sampler: BatchSampler | None, epoch: int, plan: Plan,
                   rank: int, world: int) -> Iterator[tuple[int, Any]]:
    """(batch number in the epoch, batch) for this process. Round-robin over processes; the
    last round wraps to the start so every process runs the same number of batches (DDP)."""
    if sampler is not None:
        yield from enumerate(sampler(epoch))
        return
    first_step = (epoch - 1) * plan.steps_per_epoch
    batches = list(dataset.batches(epoch, load_images=False, first_step=first_step))
    total = len(batches)
    for k in range(math.ceil(total / world)):
        number = (k * world + rank) % total
        yield number, batches[number]


def prefetch_depth(settings: TrainSettings, *, sampler: BatchSampler | None,
                   run_batch: Callable[..., Any] | None, cache: LatentCache | None) -> int:
    """How many batches the input thread decodes ahead: 0 (inline, as before) when images are
    not decoded per step (latent cache, DP's own sampler/batches) or the user asked for no data
    loader workers (`--max_data_loader_n_workers 0`)."""
    if sampler is not None or run_batch is not None or cache is not None:
        return 0
    return min(PREFETCH_DEPTH, max(0, settings.max_data_loader_n_workers))


def _batch_stream(batches: list[tuple[int, Any]], skip: int, depth: int, dataset: Any, seed: int,
                  epoch: int) -> Iterator[tuple[int, int, Any]]:
    """(position in epoch, batch number, batch) from `skip` on; with depth > 0 each batch's
    images are decoded by the prefetch thread and attached (`batch.images`). The images are a
    pure function of (seed, epoch, number), so prefetching changes no tensor."""
    pending = [(pos, number, batch) for pos, (number, batch) in enumerate(batches) if pos >= skip]
    if depth <= 0:
        yield from pending
        return

    def load(entry: tuple[int, int, Any]) -> Any:
        _pos, number, batch = entry
        return decode_batch_images(dataset, batch, seed, epoch, number)

    stream = prefetched(pending, load, depth)
    try:
        for (pos, number, batch), decoded in stream:
            # The tensor is made here, on the training thread: a torch op in the prefetch
            # thread would start a second OpenMP pool on the cores the step uses.
            batch.images = batch_tensor(decoded)
            yield pos, number, batch
            batch.images = None  # the step is done with it: free the decoded tensor
    finally:
        stream.close()


def _resolve_seed(settings: TrainSettings, loaded: LoadedState | None,
                  warn: Callable[[str], None]) -> int:
    if loaded is None:
        return settings.seed if settings.seed is not None else new_seed()
    if settings.seed is not None and settings.seed != loaded.position.seed:
        warn("--seed differs from the resumed state's seed; continuing with the state's seed")
    return loaded.position.seed


def _silent(_message: str) -> None:
    """Warning sink of non-main processes."""


def _peak_rss() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def train(settings: TrainSettings, *, progress: ProgressSink | None = None,
          hooks: TrainHooks | None = None,
          warn: Callable[[str], None] | None = None) -> TrainResult:
    """Train a LoRA per `settings`; write the final `<output_name>.safetensors` (and any
    periodic LoRA files / state directories) on the main process; return the run's figures.

    Raises ConfigError (bad settings), DataRejected (bad data/model files), TrainingError
    (non-finite loss, out of memory, failed writes).
    """
    started = time.time()
    warn = warn or get_logger("train").warning
    if settings.dp.enabled:
        from secure_trainer.privacy.dp import hooks_for

        # SECURITY: fail closed — never train without DP-SGD when DP was asked for.
        hooks = hooks_for(settings, hooks, warn)
    loaded = read_state(settings.resume) if settings.resume is not None else None
    seed = _resolve_seed(settings, loaded, warn)
    accelerator = make_accelerator(settings)
    is_main = accelerator.is_main_process
    if not is_main:
        warn = _silent  # every process would repeat the same warnings
    dataset = build_dataset(settings, seed, warn)
    plan = make_plan(dataset.batches_per_epoch(), settings, accelerator.num_processes)
    dataset.max_train_steps = plan.max_train_steps  # token warmup fractions use the real total
    model = build_model(settings, seed, accelerator.device, warn)
    built = optim.build_optimizer(model.groups, settings.optimizer, warn)
    scheduler = optim.build_scheduler(built, settings.optimizer, plan.max_train_steps)
    base, handles = model.base, model.handles
    params = [p for g in model.groups for p in g.params]
    parts = ModelParts(unet=base.unet, text_encoder=base.text_encoder, vae=base.vae,
                       handles=handles, params=params, device=accelerator.device)
    optimizer: Any = built.optimizer
    sampler: BatchSampler | None = None
    wrap = hook(hooks, "wrap")
    if wrap is not None:
        optimizer, sampler = wrap(parts, optimizer, dataset)
    unet_fwd, te_fwd, te2_fwd = parts.unet, parts.text_encoder, base.text_encoder_2
    if accelerator.num_processes > 1:
        if model.train_unet:
            unet_fwd = accelerator.prepare_model(unet_fwd)
        if model.train_text_encoder:
            te_fwd = accelerator.prepare_model(te_fwd)
            if te2_fwd is not None:
                te2_fwd = accelerator.prepare_model(te2_fwd)
    optimizer = accelerator.prepare_optimizer(optimizer)

    position = Position(global_step=0, next_epoch=1, skip_batches=0, seed=seed)
    if loaded is not None:
        position = apply_state(loaded, lora_params=lora_state_params(handles),
                               optimizer=optimizer, scheduler=scheduler)
    cache: LatentCache | None = None
    if cache_allowed(settings, warn):
        cache = LatentCache()
        fill_cache(cache, dataset, base.vae, base.vae_scale_factor, seed)
    ctx = StepContext(unet=unet_fwd, text_encoder=te_fwd, tokenizer=base.tokenizer, vae=base.vae,
                      scheduler=base.noise_scheduler, handles=handles, accelerator=accelerator,
                      noise=noise_settings(settings), cache=cache, seed=seed,
                      vae_scale=base.vae_scale_factor, weight_dtype=weight_dtype(settings),
                      clip_skip=settings.clip_skip, max_token_length=settings.max_token_length,
                      train_text_encoder=model.train_text_encoder, device=accelerator.device,
                      sdxl=sdxl_context(settings, base, te2_fwd))
    writer = scalars = None
    if is_main:
        writer = Writer(settings=settings, handles=handles, training_info=_training_info(
            settings, dataset, plan, built.name, started))
        scalars = ScalarLog(settings)
    sink: ProgressSink = progress if (progress is not None and is_main) else NullProgress()
    if loaded is not None:
        restore_rng(loaded)  # last: nothing above may draw from the restored streams

    global_step = position.global_step
    losses: list[float] = []
    timer = StepTimer(skip=1)
    owns_clipping = bool(getattr(hooks, "owns_clipping", False))
    on_step, should_stop = hook(hooks, "on_step"), hook(hooks, "should_stop")
    run_batch = hook(hooks, "run_batch")  # DP-SGD: forwards, clips and noises a batch itself
    extra_metadata = hook(hooks, "extra_metadata")
    accum = settings.gradient_accumulation_steps
    epoch = position.next_epoch - 1
    depth = prefetch_depth(settings, sampler=sampler, run_batch=run_batch, cache=cache)
    stream: Any = None
    sink.start(total_steps=plan.max_train_steps, total_epochs=plan.num_epochs,
               initial_step=global_step)
    try:
        stop = global_step >= plan.max_train_steps
        for epoch in range(position.next_epoch, plan.num_epochs + 1):
            if stop:
                break
            skip = position.skip_batches if epoch == position.next_epoch else 0
            if skip == 0:
                seed_everything(derive_seed(seed, EPOCH_STREAM, epoch))
            micro: list[float] = []
            done = 0
            batches = list(_epoch_batches(dataset, sampler, epoch, plan,
                                          accelerator.process_index, accelerator.num_processes))
            stream = _batch_stream(batches, skip, depth, dataset, seed, epoch)
            for position_in_epoch, number, batch in stream:
                if run_batch is not None:
                    value = float(run_batch(ctx, dataset, batch, epoch, number))
                else:
                    loss = batch_loss(ctx, dataset, batch, epoch, number)
                    value = float(loss.detach().item())
                    if not math.isfinite(value):
                        raise TrainingError(f"loss became {value} at step {global_step + 1} "
                                            "(lower the learning rate or use mixed_precision no)")
                    accelerator.backward(loss / accum)
                micro.append(value)
                done = position_in_epoch + 1
                if len(micro) < accum and done < len(batches):
                    continue
                if settings.optimizer.max_grad_norm > 0 and not owns_clipping:
                    accelerator.clip_grad_norm_(params, settings.optimizer.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                global_step += 1
                step_loss = sum(micro) / len(micro)
                micro = []
                losses.append(step_loss)
                sink.update(StepInfo(step=global_step, total_steps=plan.max_train_steps,
                                     epoch=epoch, total_epochs=plan.num_epochs, loss=step_loss,
                                     seconds_per_step=timer.tick()))
                if scalars is not None:
                    window = losses[-plan.steps_per_epoch:]
                    scalars.log(global_step, step_loss, sum(window) / len(window),
                                optim.current_lrs(optimizer))
                if on_step is not None:
                    on_step(global_step, step_loss)
                every = settings.save_every_n_steps
                if writer is not None and every and global_step % every == 0 \
                        and global_step < plan.max_train_steps:
                    _refresh_extra(writer, extra_metadata)
                    writer.save_lora(steps=global_step, epoch=epoch, file_step=global_step)
                    if settings.save_state:
                        at_end = done >= len(batches)
                        writer.save_state(optimizer=optimizer, scheduler=scheduler, step=global_step,
                                          position=Position(global_step, epoch + 1 if at_end else epoch,
                                                            0 if at_end else done, seed))
                if global_step >= plan.max_train_steps or (should_stop is not None and should_stop()):
                    stop = True
                    break
            stream.close()  # stops the prefetch thread when the epoch ended early
            every_epochs = settings.save_every_n_epochs
            if (writer is not None and not stop and every_epochs and epoch % every_epochs == 0
                    and epoch < plan.num_epochs):
                _refresh_extra(writer, extra_metadata)
                writer.save_lora(steps=global_step, epoch=epoch, file_epoch=epoch)
                if settings.save_state:
                    writer.save_state(optimizer=optimizer, scheduler=scheduler, epoch=epoch,
                                      position=Position(global_step, epoch + 1, 0, seed))
        accelerator.wait_for_everyone()
        lora_path = None
        if writer is not None:
            _refresh_extra(writer, extra_metadata)
            lora_path = writer.save_lora(steps=global_step, epoch=epoch)
            on_end = hook(hooks, "on_end")
            if on_end is not None:
                on_end(lora_path)
            if settings.save_state or settings.save_state_on_train_end:
                writer.save_state(optimizer=optimizer, scheduler=scheduler,
                                  position=Position(global_step, epoch + 1, 0, seed))
    except torch.OutOfMemoryError:
        raise TrainingError("out of memory: lower train_batch_size or resolution, or use "
                            "gradient_checkpointing / cache_latents") from None
    finally:
        if stream is not None:
            stream.close()
        sink.close()
        if scalars is not None:
            scalars.close()
    return TrainResult(
        lora_path=lora_path, steps=global_step, epochs=max(epoch, 0), losses=losses,
        final_loss=losses[-1] if losses else float("nan"),
        seconds_per_step=timer.seconds_per_step,
        state_dir=writer.last_state_dir if writer is not None else None,
        peak_rss_bytes=_peak_rss(), wall_seconds=time.time() - started,
        extra=dict(writer.extra_metadata) if writer is not None else {})


def _refresh_extra(writer: Writer, extra_metadata: Callable[..., Any] | None) -> None:
    if extra_metadata is not None:
        writer.extra_metadata = dict(extra_metadata())


def _training_info(settings: TrainSettings, dataset: Any, plan: Plan, optimizer_name: str,
                   started: float) -> dict[str, Any]:
    """Inputs for export.build_metadata; the data-describing ones are used only in FULL mode."""
    info: dict[str, Any] = {
        "training_started_at": int(started),
        "num_train_images": dataset.num_train_images,
        "num_reg_images": dataset.num_reg_images,
        "num_batches_per_epoch": plan.batches_per_epoch,
        "num_epochs": plan.num_epochs,
        "max_train_steps": plan.max_train_steps,
        "optimizer": optimizer_name,
    }
    if settings.metadata.value == "full":
        # Opt-in only (--metadata full): these describe the private data, as sd-scripts does.
        info["bucket_info"] = dataset.bucket_info()
        dirs: dict[str, dict[str, dict[str, int]]] = {"train": {}, "reg": {}}
        tags: dict[str, dict[str, int]] = {}
        for record in dataset.records:
            subset = dataset.datasets[record.dataset].subsets[record.subset]
            name = subset.image_dir.name
            entry = dirs["reg" if record.is_reg else "train"].setdefault(
                name, {"n_repeats": subset.num_repeats, "img_count": 0})
            entry["img_count"] += 1
            freq = tags.setdefault(name, {})
            for tag in dataset.raw_caption(record.index).split(","):
                if tag.strip():
                    freq[tag.strip().lower()] = freq.get(tag.strip().lower(), 0) + 1
        info.update(dataset_dirs=dirs["train"], reg_dataset_dirs=dirs["reg"], tag_frequency=tags)
    return info
