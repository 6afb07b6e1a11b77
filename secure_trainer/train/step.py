"""One micro-batch of training: latents (cached or encoded), conditioning, noise, UNet, loss.

Every random draw of a micro-batch comes from generators seeded by (run seed, epoch, batch
number in the epoch), never from global state, so the loss of a batch does not depend on what
ran before it — the basis of bit-identical resume. SECURITY: captions only flow into the
tokenizer; nothing is logged.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch

from secure_trainer.data.image_io import to_training_tensor
from secure_trainer.data.latent_cache import VAE_STREAM, LatentCache, encode_latents
from secure_trainer.data.te_cache import DiskTextCache, text_cache_for
from secure_trainer.models.sdxl_text import TextCache, encode_pair, tokenize_pair
from secure_trainer.models.text_encoding import encode, tokenize
from secure_trainer.train.noise import NoiseSettings, diffusion_loss, generator_for, noisy_inputs

NOISE_STREAM = 0x401
AUGMENT_STREAM = 0xA06


@dataclass
class SdxlContext:
    """SDXL's extra conditioning inputs (sdxl_train_network.py)."""

    text_encoder_2: Any
    """OpenCLIP-bigG forward to call (wrapped when it trains in multi-process runs)."""
    tokenizer_2: Any
    eos_token_id: int
    cache: TextCache | DiskTextCache | None = None
    """--cache_text_encoder_outputs (frozen encoders only; _to_disk: DiskTextCache)."""


@dataclass
class StepContext:
    """What every micro-batch needs; built once per run."""

    unet: Any
    """The UNet forward to call (DDP-wrapped in multi-process runs)."""
    text_encoder: Any
    """The text encoder forward to call (wrapped when it trains in multi-process runs)."""
    tokenizer: Any
    vae: Any
    scheduler: Any
    handles: Any
    accelerator: Any
    noise: NoiseSettings
    cache: LatentCache | None
    seed: int
    vae_scale: float
    weight_dtype: torch.dtype
    clip_skip: int | None
    max_token_length: int | None
    train_text_encoder: bool
    device: torch.device
    sdxl: SdxlContext | None = None


def decode_batch_images(dataset: Any, batch: Any, seed: int, epoch: int,
                        number: int) -> list[Any]:
    """The decoded images of a batch yielded with load_images=False: RGB uint8 HWC arrays.

    Random crop / colour jitter draw from an RNG seeded by (seed, epoch, batch number), so the
    result does not depend on which process, thread or resume point decodes the batch. No torch
    call (the prefetch thread runs this; see image_io.decode_training_image).
    """
    rng = random.Random(f"{seed}/{AUGMENT_STREAM}/{epoch}/{number}")
    return [dataset.decode_image(i, flip=f, rng=rng) for i, f in zip(batch.indices, batch.flipped)]


def batch_tensor(decoded: list[Any]) -> torch.Tensor:
    """[B,3,H,W] float32 in [-1,1] of `decode_batch_images`' arrays (on the training thread)."""
    return torch.stack([to_training_tensor(image) for image in decoded])


def load_batch_images(dataset: Any, batch: Any, seed: int, epoch: int, number: int) -> torch.Tensor:
    """Images of a batch yielded with load_images=False: [B,3,H,W] in [-1,1] (the prefetched
    tensor when the loop attached one)."""
    if batch.images is not None:
        loaded: torch.Tensor = batch.images
        return loaded
    return batch_tensor(decode_batch_images(dataset, batch, seed, epoch, number))


def batch_latents(ctx: StepContext, dataset: Any, batch: Any, epoch: int,
                  number: int) -> torch.Tensor:
    """Scaled latents [B,C,h,w] float32 on the device: from the cache when it has them."""
    if ctx.cache is not None:
        cached = ctx.cache.batch(batch.indices, batch.flipped)
        if cached is not None:
            return cached.to(ctx.device)
    images = load_batch_images(dataset, batch, ctx.seed, epoch, number)
    gens = [generator_for(ctx.seed, VAE_STREAM, epoch, number, j) for j in range(len(batch.indices))]
    return encode_latents(ctx.vae, images, ctx.vae_scale, gens).to(ctx.device)


def batch_loss(ctx: StepContext, dataset: Any, batch: Any, epoch: int, number: int) -> torch.Tensor:
    """Forward one micro-batch and return its scalar loss (graph attached for backward)."""
    latents = batch_latents(ctx, dataset, batch, epoch, number)
    if batch.network_multiplier != ctx.handles.multiplier:
        ctx.handles.set_multiplier(batch.network_multiplier)
    added: dict[str, torch.Tensor] | None = None
    if ctx.sdxl is None:
        ids = tokenize(ctx.tokenizer, list(batch.captions), ctx.max_token_length)
        with torch.set_grad_enabled(ctx.train_text_encoder), ctx.accelerator.autocast():
            hidden = encode(ctx.text_encoder, ids, ctx.clip_skip, ctx.device)
    else:
        hidden, pooled = sdxl_text(ctx, list(batch.captions))
        # Micro-conditioning: original size, crop offset, target (bucket) size per image.
        time_ids = dataset.size_conditioning(list(batch.indices), list(batch.flipped))
        added = {"text_embeds": pooled.to(ctx.weight_dtype),
                 "time_ids": time_ids.to(ctx.device, ctx.weight_dtype)}
    generator = generator_for(ctx.seed, NOISE_STREAM, epoch, number)
    noisy, timesteps, target = noisy_inputs(ctx.scheduler, latents, ctx.noise, generator)
    with ctx.accelerator.autocast():
        pred = ctx.unet(noisy.to(ctx.weight_dtype), timesteps,
                        encoder_hidden_states=hidden.to(ctx.weight_dtype),
                        added_cond_kwargs=added).sample
    return diffusion_loss(pred, target, batch.loss_weights.to(ctx.device), timesteps,
                          ctx.scheduler, ctx.noise)


def sdxl_text(ctx: StepContext, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(context, pooled) of both SDXL encoders for `captions`, from the cache when enabled."""
    sx = ctx.sdxl
    assert sx is not None

    def compute(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, ids_2 = tokenize_pair(ctx.tokenizer, sx.tokenizer_2, texts, ctx.max_token_length)
        return encode_pair(ctx.text_encoder, sx.text_encoder_2, ids, ids_2, sx.eos_token_id,
                           ctx.device)

    with torch.set_grad_enabled(ctx.train_text_encoder), ctx.accelerator.autocast():
        if sx.cache is not None:
            return sx.cache.get(captions, compute)
        return compute(captions)


def sdxl_context(settings: Any, base: Any, text_encoder_2: Any) -> SdxlContext | None:
    """The SDXL part of the step context (None for SD1.x). `text_encoder_2` is the forward to
    call (DDP-wrapped when it trains in multi-process runs)."""
    if base.text_encoder_2 is None:
        return None
    return SdxlContext(text_encoder_2=text_encoder_2, tokenizer_2=base.tokenizer_2,
                       eos_token_id=int(base.tokenizer_2.eos_token_id),
                       cache=text_cache_for(settings, base, base.unet.device))
