"""Build a random-weight SDXL model locally: a diffusers folder plus an LDM single-file checkpoint.

The architecture keeps SDXL's module names and nesting — 3 UNet levels with 1/2/10 transformer
blocks, CLIP-L with 12 layers, OpenCLIP-bigG with 32 — so LoRA key names are the real ones, with
tiny widths; `full_size` uses SDXL 1.0's real widths (~3.5 B parameters, ~7 GB in fp16 on disk).
Weights are seeded (identical on every call). Never downloads anything, never writes pickles.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from secure_trainer.devtools.ldm_layout import to_ldm_state_dict
from secure_trainer.devtools.openclip_layout import to_openclip_state_dict
from secure_trainer.devtools.tiny_model import TinyModelPaths, strip_private
from secure_trainer.devtools.tokenizer import MAX_LENGTH, write_tokenizer
from secure_trainer.models.families import (
    FORMAT_SDXL_LDM,
    META_FORMAT,
    META_MERGES,
    META_TEXT_ENCODER,
    META_TEXT_ENCODER_2,
    META_UNET,
    META_VAE,
    META_VOCAB,
    sdxl_config,
)

SEED = 4321
SINGLE_FILE_NAME = "tiny-sdxl.safetensors"
TE1_PREFIX = "conditioner.embedders.0.transformer."
TE2_PREFIX = "conditioner.embedders.1.model."
# SDXL's second tokenizer pads with "!" instead of the end token.
TOKENIZER_2_PAD = "!"


def sdxl_configs(full_size: bool, vocab_size: int) -> dict[str, dict[str, Any]]:
    """unet / vae / text_encoder / text_encoder_2 configs, tiny unless `full_size`."""
    cfgs = {name: sdxl_config(name) for name in ("unet", "vae", "text_encoder", "text_encoder_2")}
    if full_size:
        return cfgs
    te1_hidden, te2_hidden, time_dim = 32, 64, 8
    # Depths stay 1/2/10 (UNet) and 12/32 (encoders): the LoRA key names are SDXL's.
    cfgs["unet"].update(
        block_out_channels=[32, 64, 64], attention_head_dim=[2, 4, 4],
        cross_attention_dim=te1_hidden + te2_hidden, addition_time_embed_dim=time_dim,
        projection_class_embeddings_input_dim=te2_hidden + 6 * time_dim, sample_size=8)
    cfgs["vae"].update(block_out_channels=[32, 32, 64, 64], layers_per_block=1, sample_size=64)
    special = {"vocab_size": vocab_size, "bos_token_id": vocab_size - 2,
               "eos_token_id": vocab_size - 1}
    cfgs["text_encoder"].update(hidden_size=te1_hidden, intermediate_size=64, num_attention_heads=4,
                                projection_dim=te1_hidden, pad_token_id=vocab_size - 1, **special)
    cfgs["text_encoder_2"].update(hidden_size=te2_hidden, intermediate_size=128,
                                  num_attention_heads=4, projection_dim=te2_hidden,
                                  pad_token_id=0, **special)
    return cfgs


def _write_tokenizers(diffusers_dir: Path, full_size: bool) -> int:
    vocab_size = write_tokenizer(diffusers_dir / "tokenizer", full_size=full_size)
    tok2 = diffusers_dir / "tokenizer_2"
    write_tokenizer(tok2, full_size=full_size)
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        data = json.loads((tok2 / name).read_text(encoding="utf-8"))
        data["pad_token"] = TOKENIZER_2_PAD
        (tok2 / name).write_text(json.dumps(data, indent=2), encoding="utf-8")
    return vocab_size


def make_tiny_sdxl(out: Path, *, full_size: bool = False) -> TinyModelPaths:
    """Write a seeded random SDXL model under `out` and return its two forms.

    `out/diffusers/` is a StableDiffusionXLPipeline folder (safetensors only, both tokenizers);
    `out/<name>.safetensors` holds the same weights in the SGM/LDM single-file layout
    (`model.diffusion_model.`, `first_stage_model.`, `conditioner.embedders.{0,1}.`) with our
    configs and the tokenizer in `secure_trainer.*` metadata. Full size is stored in float16.
    Raises OSError if `out` is not writable.
    """
    from secure_trainer.models.loading import quiet_hf

    out = Path(out)
    diffusers_dir = out / "diffusers"
    vocab_size = _write_tokenizers(diffusers_dir, full_size)
    cfgs = sdxl_configs(full_size, vocab_size)
    with quiet_hf():
        from diffusers import (
            AutoencoderKL,
            EulerDiscreteScheduler,
            StableDiffusionXLPipeline,
            UNet2DConditionModel,
        )
        from transformers import (
            CLIPTextConfig,
            CLIPTextModel,
            CLIPTextModelWithProjection,
            CLIPTokenizer,
        )

        dtype = torch.float16 if full_size else torch.float32
        previous = torch.get_default_dtype()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(SEED)
            # Full size is built directly in fp16: ~7 GB instead of ~14 GB of fp32 first.
            torch.set_default_dtype(dtype)
            try:
                unet = UNet2DConditionModel.from_config(strip_private(cfgs["unet"]))
                vae = AutoencoderKL.from_config(strip_private(cfgs["vae"]))
                te1 = CLIPTextModel(CLIPTextConfig(**strip_private(cfgs["text_encoder"])))
                te2 = CLIPTextModelWithProjection(
                    CLIPTextConfig(**strip_private(cfgs["text_encoder_2"])))
            finally:
                torch.set_default_dtype(previous)
        for module in (unet, vae, te1, te2):
            module.to(dtype)
        tokenizers = []
        for sub in ("tokenizer", "tokenizer_2"):
            tok = CLIPTokenizer.from_pretrained(diffusers_dir / sub, local_files_only=True)
            tok.model_max_length = MAX_LENGTH
            tokenizers.append(tok)
        scheduler = EulerDiscreteScheduler.from_config(strip_private(sdxl_config("scheduler")))
        pipe = StableDiffusionXLPipeline(
            vae=vae, text_encoder=te1, text_encoder_2=te2, tokenizer=tokenizers[0],
            tokenizer_2=tokenizers[1], unet=unet, scheduler=scheduler)
        pipe.save_pretrained(diffusers_dir, safe_serialization=True)
        ldm = to_ldm_state_dict(unet.state_dict(), vae.state_dict(), {},
                                unet_config=cfgs["unet"], vae_config=cfgs["vae"])
    for key, value in te1.state_dict().items():
        name = key if key.startswith("text_model.") else "text_model." + key
        ldm[TE1_PREFIX + name] = value
    for key, value in to_openclip_state_dict(te2.state_dict()).items():
        ldm[TE2_PREFIX + key] = value
    tok_dir = diffusers_dir / "tokenizer"
    metadata = {
        "format": "pt",
        META_FORMAT: FORMAT_SDXL_LDM,
        META_UNET: json.dumps(strip_private(cfgs["unet"])),
        META_VAE: json.dumps(strip_private(cfgs["vae"])),
        META_TEXT_ENCODER: json.dumps(strip_private(cfgs["text_encoder"])),
        META_TEXT_ENCODER_2: json.dumps(strip_private(cfgs["text_encoder_2"])),
        META_VOCAB: (tok_dir / "vocab.json").read_text(encoding="utf-8"),
        META_MERGES: (tok_dir / "merges.txt").read_text(encoding="utf-8"),
    }
    from safetensors.torch import save, save_file

    from secure_trainer.kohya.export import canonical_header

    single_file = out / (SINGLE_FILE_NAME if not full_size else "full-sdxl.safetensors")
    tensors = {k: v.contiguous() for k, v in ldm.items()}
    if full_size:
        # ~7 GB: written directly, not held as bytes twice (header order is cosmetic here).
        save_file(tensors, str(single_file), metadata=metadata)
    else:
        single_file.write_bytes(canonical_header(save(tensors, metadata=metadata)))
    return TinyModelPaths(diffusers_dir=diffusers_dir, single_file=single_file)
