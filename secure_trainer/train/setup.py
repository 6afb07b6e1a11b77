"""Assemble one training run from TrainSettings: accelerator, model + LoRA, dataset, optimizer.

Also owns the run's arithmetic (steps per epoch, max steps, epochs) with Kohya's rules and the
seeding of everything random at build time (LoRA init), so a resumed run rebuilds the same
objects before its state is loaded. Never logs a path or caption; errors are our typed ones.
"""

from __future__ import annotations

import math
import os
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from secure_trainer.data.dataset import KohyaDataset
from secure_trainer.data.latent_cache import LatentCache
from secure_trainer.errors import ConfigError
from secure_trainer.models.text_encoding import check_text_settings
from secure_trainer.settings import TrainSettings
from secure_trainer.train import optim
from secure_trainer.train.noise import NoiseSettings, derive_seed

INIT_STREAM = 0x1A17  # seed stream for model build / LoRA init
Warn = Callable[[str], None]


@dataclass(frozen=True)
class Plan:
    """Kohya's step arithmetic for this run (per process)."""

    batches_per_epoch: int
    """Micro-batches in one epoch over all processes."""
    batches_per_process: int
    steps_per_epoch: int
    max_train_steps: int
    num_epochs: int


def make_plan(batches_per_epoch: int, settings: TrainSettings, num_processes: int) -> Plan:
    """Steps/epoch = ceil(ceil(batches / processes) / grad_accum); max_train_epochs overrides
    max_train_steps; epochs = ceil(max_steps / steps_per_epoch)."""
    per_process = math.ceil(batches_per_epoch / num_processes)
    steps_per_epoch = max(1, math.ceil(per_process / settings.gradient_accumulation_steps))
    if settings.max_train_epochs:
        max_steps = settings.max_train_epochs * steps_per_epoch
    else:
        max_steps = settings.max_train_steps
    return Plan(batches_per_epoch=batches_per_epoch, batches_per_process=per_process,
                steps_per_epoch=steps_per_epoch, max_train_steps=max_steps,
                num_epochs=math.ceil(max_steps / steps_per_epoch))


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch global RNGs (used at build time and each epoch start)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def new_seed() -> int:
    """A random run seed (Kohya: random when --seed is unset); recorded in saved states."""
    return secrets.randbelow(2**31)


def make_accelerator(settings: TrainSettings) -> Any:
    """An accelerate Accelerator for `mixed_precision`; multi-process when launched that way.

    Raises ConfigError for fp16 without CUDA (CPU fp16 autocast is not supported reliably).
    """
    from accelerate import Accelerator

    if settings.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise ConfigError("mixed_precision fp16 needs a CUDA GPU; use bf16 or no on CPU")
    from accelerate.state import AcceleratorState

    # `train()` is a library call that may run several times in one process (tests, the
    # lifecycle); accelerate keeps mixed precision in a process-wide singleton. Reset that part
    # only — the distributed PartialState (process group) must survive.
    AcceleratorState._reset_state(reset_partial_state=False)
    # cpu=True without CUDA: under torchrun / `accelerate launch --multi_gpu` env (LOCAL_RANK set)
    # accelerate then picks MULTI_CPU with gloo instead of silently running N single processes.
    accelerator = Accelerator(mixed_precision=settings.mixed_precision,
                              cpu=not torch.cuda.is_available())
    if "OMP_NUM_THREADS" not in os.environ:
        # Share the usable cores between local processes instead of oversubscribing them.
        local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes)))
        torch.set_num_threads(max(1, min(torch.get_num_threads(), cpu_budget() // local)))
    single_threaded_image_ops()
    return accelerator


def single_threaded_image_ops() -> None:
    """OpenCV resizes on one thread in the trainer. Its own pool would start one thread per
    core, which keep spinning after each resize on the very cores the training step's OpenMP
    pool is using: on 2 cores that cost ~10 % of a 256 px SD1.5 step (docs/trainer.md). A
    training image's resize is a few milliseconds; it gains nothing from more threads."""
    import cv2

    cv2.setNumThreads(1)


def cpu_budget() -> int:
    """CPUs this process may really use: affinity mask, capped by a cgroup v2 CPU quota.

    torch defaults to the host's physical cores, which in a container with a CPU quota
    oversubscribes badly. Raises nothing (falls back to os.cpu_count()).
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max", encoding="ascii") as fh:
            quota, period = fh.read().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota visible: the affinity mask is the budget
    return max(1, cpus)


def weight_dtype(settings: TrainSettings) -> torch.dtype:
    """dtype of the frozen UNet/text-encoder weights: the mixed precision dtype, else float32."""
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(settings.mixed_precision,
                                                                torch.float32)


@dataclass
class Model:
    """Loaded base model, injected LoRA, and which parts train."""

    base: Any
    handles: Any
    train_unet: bool
    train_text_encoder: bool
    groups: list[optim.ParamGroupSpec]


def vae_dtype(settings: TrainSettings, weight: torch.dtype, *, sdxl: bool) -> torch.dtype:
    """The VAE's compute dtype, as sd-scripts picks it: the weight dtype unless --no_half_vae.

    Two deliberate exceptions keep it float32: SDXL (its VAE overflows in half precision, the
    family's documented rule) and fp16 (the SD1.x VAE also overflows in fp16 on large images, and
    fp16 is no speed-up on CPU). bf16 has fp32's range, so SD1.x under `--mixed_precision bf16`
    encodes in bf16 like sd-scripts does (about 2x faster per image on this CPU).
    """
    if sdxl or settings.no_half_vae or weight != torch.bfloat16:
        return torch.float32
    return weight


def build_model(settings: TrainSettings, seed: int, device: torch.device, warn: Warn) -> Model:
    """Load the base model (safetensors only), inject LoRA, resolve LR groups, move to device.

    The VAE's dtype is `vae_dtype`; LoRA parameters are float32 unless
    full_fp16/full_bf16. Raises DataRejected (pickles, bad files), ConfigError (bad settings).
    """
    from secure_trainer.kohya import export
    from secure_trainer.models import lora
    from secure_trainer.models.detect import check_family, detect_family
    from secure_trainer.models.loading import load_base_model

    # Before any weight is read: --sdxl/--v2 must agree with the model (one line, exit 2).
    check_family(detect_family(settings.pretrained_model_name_or_path), sdxl=settings.sdxl,
                 v2=settings.v2)
    dtype = weight_dtype(settings)
    base = load_base_model(settings.pretrained_model_name_or_path, vae=settings.vae, dtype=dtype)
    base.vae.to(device=device, dtype=vae_dtype(settings, dtype, sdxl=base.text_encoder_2 is not None))
    check_text_settings(base.text_encoder, settings.clip_skip, settings.max_token_length)
    encoders = [m for m in (base.text_encoder, base.text_encoder_2) if m is not None]
    param_dtype = dtype if (settings.full_fp16 or settings.full_bf16) else torch.float32
    with torch.random.fork_rng(devices=[]):
        seed_everything(derive_seed(seed, INIT_STREAM))
        handles = lora.inject_lora(base, settings.network, param_dtype=param_dtype)
    if base.text_encoder_2 is not None:
        _freeze_unused_te1_layer(handles, int(base.text_encoder.config.num_hidden_layers))
    if settings.network.network_weights is not None:
        report = export.load_kohya_into(handles, settings.network.network_weights)
        if report.missing:
            warn(f"network_weights: {len(report.missing)} module(s) not in the file start fresh")
    groups = optim.resolve_groups(handles.unet_params(), handles.text_encoder_params("text_encoder"),
                                  settings.optimizer,
                                  handles.text_encoder_params("text_encoder_2"))
    names = {g.name for g in groups}
    base.unet.to(device)
    for module in encoders:
        module.to(device)
    # Frozen modules in eval mode (no dropout, no BN updates); only LoRA dropout trains,
    # like Kohya's network.train() on an eval() base.
    for module in (base.unet, base.vae, *encoders):
        module.eval()
    for layer, _kind in handles.modules.values():
        dropout = getattr(layer, "lora_dropout", None)
        if dropout is not None:
            dropout.train()
    train_te = bool(names & {"text_encoder", "text_encoder_2"})
    if settings.gradient_checkpointing:
        base.unet.enable_gradient_checkpointing()
        if train_te:
            for module in encoders:
                module.gradient_checkpointing_enable(
                    gradient_checkpointing_kwargs={"use_reentrant": False})
                module.train()  # transformers checkpoints only in training mode
    return Model(base=base, handles=handles, train_unet="unet" in names,
                 train_text_encoder=train_te, groups=groups)


def _freeze_unused_te1_layer(handles: Any, layers: int) -> None:
    """SDXL conditions on CLIP-L's penultimate layer, so its last layer's LoRA never gets a
    gradient (sd-scripts saves it untouched). Mark it frozen so DDP does not wait for it;
    the file still carries it, at its initial value, exactly as sd-scripts writes it."""
    marker = f"_encoder_layers_{layers - 1}_"
    for name, (layer, _kind) in handles.modules.items():
        if name.startswith("lora_te1_") and marker in name:
            layer.lora_A[handles.adapter].weight.requires_grad_(False)
            layer.lora_B[handles.adapter].weight.requires_grad_(False)


def build_dataset(settings: TrainSettings, seed: int, warn: Warn) -> KohyaDataset:
    """The Kohya dataset (scans folders, reads captions). Raises DataRejected/ConfigError."""
    return KohyaDataset(settings.datasets, seed=seed, prior_loss_weight=settings.prior_loss_weight,
                        max_train_steps=settings.max_train_steps,
                        gradient_accumulation_steps=settings.gradient_accumulation_steps,
                        warn=warn)


def cache_allowed(settings: TrainSettings, warn: Warn) -> bool:
    """--cache_latents unless a subset uses color_aug/random_crop (then warn and disable)."""
    if not settings.cache_latents:
        return False
    if any(s.color_aug or s.random_crop for d in settings.datasets for s in d.subsets):
        warn("cache_latents disabled: color_aug/random_crop change the image every epoch")
        return False
    return True


def fill_cache(cache: LatentCache, dataset: KohyaDataset, vae: Any, scale: float,
               seed: int) -> None:
    """Encode every image (and its flip when that subset uses flip_aug) into `cache`."""
    keys = []
    for record in dataset.records:
        subset = settings_subset(dataset, record)
        keys.append((record.index, False, record.bucket))
        if subset.flip_aug:
            keys.append((record.index, True, record.bucket))
    cache.fill(keys, load_image=lambda i, f: dataset.load_image(i, flip=f), vae=vae,
               scale=scale, seed=seed, batch_size=4)


def settings_subset(dataset: KohyaDataset, record: Any) -> Any:
    """The SubsetSettings an image record came from."""
    return dataset.datasets[record.dataset].subsets[record.subset]


def noise_settings(settings: TrainSettings) -> NoiseSettings:
    """The objective's slice of the settings."""
    return NoiseSettings(min_timestep=settings.min_timestep, max_timestep=settings.max_timestep,
                         noise_offset=settings.noise_offset, min_snr_gamma=settings.min_snr_gamma,
                         v_parameterization=settings.v_parameterization)
