"""Build a random-weight SD1.x model locally: a diffusers folder plus a single-file checkpoint.

The architecture has SD1.5's module names and nesting (so LoRA key names are the real ones)
with tiny widths, or SD1.5's real widths with `full_size`. Weights are seeded and therefore
identical on every call. Never downloads anything and never writes pickle files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from secure_trainer.devtools.ldm_layout import to_ldm_state_dict
from secure_trainer.devtools.tokenizer import MAX_LENGTH, write_tokenizer
from secure_trainer.models.families import (
    FORMAT_SD1_LDM,
    META_FORMAT,
    META_MERGES,
    META_TEXT_ENCODER,
    META_UNET,
    META_VAE,
    META_VOCAB,
    sd15_config,
)

SEED = 1234
SINGLE_FILE_NAME = "tiny-sd15.safetensors"


@dataclass(frozen=True)
class TinyModelPaths:
    """Where `make_tiny_model` put the model."""

    diffusers_dir: Path
    """Diffusers pipeline folder (model_index.json, unet/, text_encoder/, tokenizer/, vae/, scheduler/)."""
    single_file: Path
    """The same weights as one LDM-layout `.safetensors` checkpoint."""


def _configs(full_size: bool, vocab_size: int) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    unet = sd15_config("unet")
    vae = sd15_config("vae")
    te = sd15_config("text_encoder")
    if full_size:
        return unet, vae, te
    unet.update(block_out_channels=[32, 64, 64, 64], attention_head_dim=4, cross_attention_dim=32,
                sample_size=8)
    vae.update(block_out_channels=[32, 32, 64, 64], layers_per_block=1, sample_size=64)
    # Keep 12 layers so text-encoder LoRA names use SD1.5's layer indices 0..11.
    te.update(hidden_size=32, intermediate_size=64, num_attention_heads=4, projection_dim=32,
              vocab_size=vocab_size, bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1,
              pad_token_id=vocab_size - 1)
    return unet, vae, te


def strip_private(config: dict[str, Any]) -> dict[str, Any]:
    """A config without diffusers' private `_*` keys and transformers' `architectures`."""
    return {k: v for k, v in config.items() if not k.startswith("_") and k != "architectures"}


def make_tiny_model(out: Path, *, full_size: bool = False) -> TinyModelPaths:
    """Write a seeded random SD1.x model under `out` and return its two forms.

    `out/diffusers/` holds the pipeline folder (safetensors weights only); `out/<name>.safetensors`
    the same weights in the LDM single-file layout, with our diffusers configs and the generated
    tokenizer embedded in `secure_trainer.*` metadata so it loads with no other file. Full-size
    weights are stored in float16 (like pruned SD1.5 files) to halve the ~4 GB disk footprint.
    Raises nothing of ours; OSError if `out` is not writable.
    """
    from secure_trainer.models.loading import quiet_hf

    out = Path(out)
    diffusers_dir = out / "diffusers"
    tok_dir = diffusers_dir / "tokenizer"
    vocab_size = write_tokenizer(tok_dir, full_size=full_size)
    unet_cfg, vae_cfg, te_cfg = _configs(full_size, vocab_size)
    with quiet_hf():
        # Imported here, silenced: the pipeline import chain logs optional-backend warnings.
        from diffusers import (
            AutoencoderKL,
            PNDMScheduler,
            StableDiffusionPipeline,
            UNet2DConditionModel,
        )
        from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(SEED)
            unet = UNet2DConditionModel.from_config(strip_private(unet_cfg))
            vae = AutoencoderKL.from_config(strip_private(vae_cfg))
            text_encoder = CLIPTextModel(CLIPTextConfig(**strip_private(te_cfg)))
        dtype = torch.float16 if full_size else torch.float32
        unet.to(dtype)
        vae.to(dtype)
        text_encoder.to(dtype)
        tokenizer = CLIPTokenizer.from_pretrained(tok_dir, local_files_only=True)
        tokenizer.model_max_length = MAX_LENGTH
        scheduler = PNDMScheduler.from_config(strip_private(sd15_config("scheduler")))
        pipe = StableDiffusionPipeline(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
            safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        pipe.save_pretrained(diffusers_dir, safe_serialization=True)
        ldm = to_ldm_state_dict(unet.state_dict(), vae.state_dict(), text_encoder.state_dict(),
                                unet_config=unet_cfg, vae_config=vae_cfg)
    single_file = out / (SINGLE_FILE_NAME if not full_size else "full-sd15.safetensors")
    metadata = {
        "format": "pt",
        META_FORMAT: FORMAT_SD1_LDM,
        META_UNET: json.dumps(strip_private(unet_cfg)),
        META_VAE: json.dumps(strip_private(vae_cfg)),
        META_TEXT_ENCODER: json.dumps(strip_private(te_cfg)),
        META_VOCAB: (tok_dir / "vocab.json").read_text(encoding="utf-8"),
        META_MERGES: (tok_dir / "merges.txt").read_text(encoding="utf-8"),
    }
    from safetensors.torch import save

    from secure_trainer.kohya.export import canonical_header

    blob = save({k: v.contiguous() for k, v in ldm.items()}, metadata=metadata)
    single_file.write_bytes(canonical_header(blob))
    return TinyModelPaths(diffusers_dir=diffusers_dir, single_file=single_file)


def summarize(paths: TinyModelPaths) -> str:
    """One line describing what was written (no weights, just sizes)."""
    folder_bytes = sum(p.stat().st_size for p in paths.diffusers_dir.rglob("*") if p.is_file())
    single = paths.single_file.stat().st_size
    return (f"tiny model: diffusers folder {paths.diffusers_dir} ({folder_bytes / 1e6:.1f} MB), "
            f"single file {paths.single_file} ({single / 1e6:.1f} MB)")
