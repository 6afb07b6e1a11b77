"""Baseline for `make bench`: a bare diffusers + peft LoRA training loop, no secure-trainer code.

Same model folder, same images (cover-resized and centre-cropped to the resolution), same LoRA
targets as `secure_trainer.models.lora` (Linear/1×1 conv inside UNet Transformer2DModel blocks, Linear
inside CLIP attention/MLP) through peft's LoraConfig(target_modules=...), AdamW, MSE on epsilon,
grad clipping 1.0, batch 1, fp32 on CPU by default. `--device cuda --mixed_precision bf16`
(scripts/gpu_check.py) mirrors our bf16 mode: frozen UNet/text encoder in bf16, VAE and LoRA
weights in float32, bf16 autocast, SDPA attention. It is what a user would write by hand; the
bench compares `secure-trainer train` against it.
`--sdxl` runs Kohya's SDXL low-memory recipe by hand: both text encoders and the VAE encode
every sample once up front (cached latents and text-encoder outputs), LoRA on the UNet only,
UNet gradient checkpointing, size/crop `time_ids` and the pooled bigG output as added
conditioning, latents scaled by 0.13025.

Prints `step k/N loss x` per step on stdout, then one JSON line with its own timings.
Never writes anything to disk.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor2_0
from diffusers.utils import logging as diffusers_logging
from peft import LoraConfig, inject_adapter_in_model
from PIL import Image
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer
from transformers.utils import logging as transformers_logging

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


def lora_targets(root: torch.nn.Module, block_classes: set[str]) -> list[str]:
    """Module paths of every Linear / 1×1 Conv2d inside a module whose class is in `block_classes`."""
    found: list[str] = []
    for block_path, block in root.named_modules():
        if type(block).__name__ not in block_classes:
            continue
        for child_path, child in block.named_modules():
            path = f"{block_path}.{child_path}" if block_path else child_path
            if path in found:
                continue
            if isinstance(child, torch.nn.Linear) or (
                    isinstance(child, torch.nn.Conv2d) and tuple(child.kernel_size) == (1, 1)):
                found.append(path)
    return found


def load_samples(data_dir: Path, resolution: int) -> list[tuple[torch.Tensor, str]]:
    """(image [3,R,R] in [-1,1], caption) for every image in the sub-folders of `data_dir`."""
    samples = []
    for folder in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        class_tokens = folder.name.split("_", 1)[1] if "_" in folder.name else ""
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            caption_file = path.with_suffix(".txt")
            caption = (caption_file.read_text(encoding="utf-8").splitlines()[0].strip()
                       if caption_file.is_file() else class_tokens)
            image = Image.open(path).convert("RGB")
            scale = resolution / min(image.size)
            w, h = round(image.width * scale), round(image.height * scale)
            image = image.resize((w, h), Image.Resampling.LANCZOS)
            left, top = (w - resolution) // 2, (h - resolution) // 2
            image = image.crop((left, top, left + resolution, top + resolution))
            data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
            tensor = data.view(resolution, resolution, 3).permute(2, 0, 1).float() / 127.5 - 1.0
            samples.append((tensor, caption))
    return samples


def main() -> None:
    """Parse args, train `--steps` steps, print per-step lines and a JSON summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="diffusers model folder")
    parser.add_argument("--data", type=Path, required=True, help="Kohya train_data_dir")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--mixed_precision", choices=("no", "bf16"), default="no")
    parser.add_argument("--sdxl", action="store_true", help="SDXL low-memory recipe (see above)")
    args = parser.parse_args()
    if args.sdxl:
        sdxl_main(args)
        return
    device = torch.device(args.device)
    bf16 = args.mixed_precision == "bf16"
    dtype = torch.bfloat16 if bf16 else torch.float32
    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    torch.manual_seed(args.seed)
    started = time.perf_counter()

    common = {"use_safetensors": True, "local_files_only": True}
    unet = UNet2DConditionModel.from_pretrained(args.model, subfolder="unet",
                                                torch_dtype=dtype, **common)
    vae = AutoencoderKL.from_pretrained(args.model, subfolder="vae", torch_dtype=torch.float32,
                                        **common)
    text_encoder = CLIPTextModel.from_pretrained(args.model, subfolder="text_encoder",
                                                 dtype=dtype, attn_implementation="sdpa",
                                                 **common)
    unet.set_attn_processor(AttnProcessor2_0())  # SDPA (diffusers' default with torch 2)
    tokenizer = CLIPTokenizer.from_pretrained(args.model, subfolder="tokenizer",
                                              local_files_only=True)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                              beta_schedule="scaled_linear", clip_sample=False)
    for module in (unet, vae, text_encoder):
        module.requires_grad_(False)
    unet_targets = lora_targets(unet, {"Transformer2DModel"})
    te_targets = lora_targets(text_encoder, {"CLIPAttention", "CLIPSdpaAttention", "CLIPMLP"})
    for model, targets in ((unet, unet_targets), (text_encoder, te_targets)):
        inject_adapter_in_model(LoraConfig(r=args.rank, lora_alpha=args.rank,
                                           target_modules=targets, init_lora_weights=True), model)
    params = [p for m in (unet, text_encoder) for p in m.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float()  # LoRA weights train in float32, like ours without full_bf16
    for module in (unet, vae, text_encoder):
        module.to(device)
    optimizer = torch.optim.AdamW(params, lr=args.lr)
    samples = load_samples(args.data, args.resolution)
    order = list(range(len(samples)))
    random.Random(args.seed).shuffle(order)
    load_seconds = time.perf_counter() - started

    step_times = []
    for step in range(args.steps):
        t0 = time.perf_counter()
        image, caption = samples[order[step % len(order)]]
        with torch.no_grad():
            latents = vae.encode(image.unsqueeze(0).to(device)).latent_dist.sample() * 0.18215
        ids = tokenizer([caption], padding="max_length", truncation=True,
                        max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
        noise = torch.randn_like(latents)
        timesteps = torch.randint(0, 1000, (1,)).to(device)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            hidden = text_encoder(ids.to(device))[0]
            pred = unet(noisy, timesteps, encoder_hidden_states=hidden).sample
        loss = torch.nn.functional.mse_loss(pred.float(), noise.float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step_times.append(time.perf_counter() - t0)
        print(f"step {step + 1}/{args.steps} loss {loss.item():.4f}", flush=True)
    print(json.dumps({
        "load_seconds": load_seconds,
        "step_seconds": step_times,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "lora_params": sum(p.numel() for p in params),
        "peak_vram_bytes": torch.cuda.max_memory_allocated() if device.type == "cuda" else None,
    }), flush=True)


def _quiet() -> None:
    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()


def sdxl_main(args: argparse.Namespace) -> None:
    """The SDXL recipe: cache latents + text outputs, UNet-only LoRA, gradient checkpointing."""
    device = torch.device(args.device)
    bf16 = args.mixed_precision == "bf16"
    dtype = torch.bfloat16 if bf16 else torch.float32
    _quiet()
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    common = {"use_safetensors": True, "local_files_only": True}
    unet = UNet2DConditionModel.from_pretrained(args.model, subfolder="unet", torch_dtype=dtype,
                                                **common)
    vae = AutoencoderKL.from_pretrained(args.model, subfolder="vae", torch_dtype=torch.float32,
                                        **common)
    te1 = CLIPTextModel.from_pretrained(args.model, subfolder="text_encoder", dtype=dtype,
                                        attn_implementation="sdpa", **common)
    te2 = CLIPTextModelWithProjection.from_pretrained(
        args.model, subfolder="text_encoder_2", dtype=dtype, attn_implementation="sdpa", **common)
    tok1 = CLIPTokenizer.from_pretrained(args.model, subfolder="tokenizer", local_files_only=True)
    tok2 = CLIPTokenizer.from_pretrained(args.model, subfolder="tokenizer_2",
                                         local_files_only=True)
    unet.set_attn_processor(AttnProcessor2_0())
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                              beta_schedule="scaled_linear", clip_sample=False)
    for module in (unet, vae, te1, te2):
        module.requires_grad_(False)
        module.to(device)
    samples = load_samples(args.data, args.resolution)
    cached = []
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for image, caption in samples:
            latents = vae.encode(image.unsqueeze(0).to(device)).latent_dist.sample() * 0.13025
            ids1 = tok1([caption], padding="max_length", truncation=True, max_length=77,
                        return_tensors="pt").input_ids.to(device)
            ids2 = tok2([caption], padding="max_length", truncation=True, max_length=77,
                        return_tensors="pt").input_ids.to(device)
            out1 = te1(ids1, output_hidden_states=True)
            out2 = te2(ids2, output_hidden_states=True)
            hidden = torch.cat([out1.hidden_states[-2], out2.hidden_states[-2]], dim=-1)
            cached.append((latents.float(), hidden.to(dtype), out2.text_embeds.to(dtype)))
    inject_adapter_in_model(LoraConfig(r=args.rank, lora_alpha=args.rank,
                                       target_modules=lora_targets(unet, {"Transformer2DModel"}),
                                       init_lora_weights=True), unet)
    params = [p for p in unet.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float()
    unet.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW(params, lr=args.lr)
    size = float(args.resolution)
    time_ids = torch.tensor([[size, size, 0.0, 0.0, size, size]], device=device, dtype=dtype)
    order = list(range(len(cached)))
    random.Random(args.seed).shuffle(order)
    load_seconds = time.perf_counter() - started
    step_times = []
    for step in range(args.steps):
        t0 = time.perf_counter()
        latents, hidden, pooled = cached[order[step % len(order)]]
        noise = torch.randn_like(latents)
        timesteps = torch.randint(0, 1000, (1,)).to(device)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            pred = unet(noisy.to(dtype), timesteps, encoder_hidden_states=hidden,
                        added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids}).sample
        loss = torch.nn.functional.mse_loss(pred.float(), noise.float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step_times.append(time.perf_counter() - t0)
        print(f"step {step + 1}/{args.steps} loss {loss.item():.4f}", flush=True)
    print(json.dumps({
        "load_seconds": load_seconds, "step_seconds": step_times,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "lora_params": sum(p.numel() for p in params),
        "peak_vram_bytes": torch.cuda.max_memory_allocated() if device.type == "cuda" else None,
    }), flush=True)


if __name__ == "__main__":
    main()
