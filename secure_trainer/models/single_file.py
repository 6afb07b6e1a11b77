"""Turn a validated LDM-layout SD1.x single-file `.safetensors` into diffusers/transformers modules.

Architecture configs come from the file's own `secure_trainer.*` metadata (our development
checkpoints) or from the bundled SD1.5 configs in `secure_trainer/models/configs/sd15/`; key renaming uses
diffusers' LDM → diffusers conversion tables. Modules are built on the meta device and filled
with `load_state_dict(strict=True, assign=True)`, so a file that does not fit the architecture
is refused before any large allocation. Never reads a file that `safetensors_check` has not
validated, never downloads, never puts a path in an error message.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from secure_trainer.errors import DataRejected
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
from secure_trainer.models.safetensors_check import SafetensorsHeader
from secure_trainer.models.tokenizers import require_tokenizer

META_CONFIGS = {"unet": META_UNET, "vae": META_VAE, "text_encoder": META_TEXT_ENCODER}
UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."
_MISMATCH = "the checkpoint does not match its model architecture (missing or unexpected weights)"
_MAX_POSITIONS = 1024


@dataclass
class Parts:
    """Modules built from one single-file checkpoint."""

    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any


def _family_check(keys: set[str]) -> None:
    if any(k.startswith("conditioner.embedders.") for k in keys):
        raise DataRejected("SDXL checkpoints are not supported (SD1.x only)")
    if any(k.startswith("cond_stage_model.model.") for k in keys):
        raise DataRejected("SD2.x checkpoints are not supported (SD1.x only)")
    for prefix in (UNET_PREFIX, VAE_PREFIX, CLIP_PREFIX):
        if not any(k.startswith(prefix) for k in keys):
            raise DataRejected("not an SD1.x single-file checkpoint (UNet, VAE or CLIP weights missing)")


def embedded_configs(metadata: dict[str, str], *, fmt: str, keys: dict[str, str],
                     bundled: Callable[[str], dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Module configs of a single file: its own `secure_trainer.*` metadata when it declares
    our format `fmt` (one JSON config per `keys` entry), else the family's bundled configs.

    Raises DataRejected for malformed embedded configs.
    """
    if metadata.get(META_FORMAT) != fmt:
        return {name: bundled(name) for name in keys}
    out: dict[str, dict[str, Any]] = {}
    for name, key in keys.items():
        try:
            cfg = json.loads(metadata[key])
        except (KeyError, json.JSONDecodeError):
            raise DataRejected("malformed secure_trainer config metadata in the checkpoint") from None
        if not isinstance(cfg, dict):
            raise DataRejected("malformed secure_trainer config metadata in the checkpoint")
        out[name] = cfg
    return out


def tokenizer_from(metadata: dict[str, str], tokenizer_dir: Path | None) -> Any:
    """The tokenizer embedded in our `secure_trainer.*` metadata, else `require_tokenizer`.

    Raises DataRejected for malformed embedded metadata, ConfigError when none is found.
    """
    from transformers import CLIPTokenizer

    if META_VOCAB in metadata and META_MERGES in metadata:
        bad = DataRejected("malformed tokenizer metadata in the checkpoint")
        try:
            vocab = json.loads(metadata[META_VOCAB])
        except json.JSONDecodeError:
            raise bad from None
        lines = [ln for ln in metadata[META_MERGES].splitlines() if ln and not ln.startswith("#")]
        merges = [tuple(ln.split(" ", 1)) for ln in lines]
        if (not isinstance(vocab, dict) or not all(isinstance(v, int) for v in vocab.values())
                or not all(len(m) == 2 for m in merges)):
            raise bad
        try:
            return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)
        except (TypeError, ValueError):
            raise bad from None
    return require_tokenizer(tokenizer_dir)


def fill_module(module: torch.nn.Module, state: dict[str, torch.Tensor], dtype: torch.dtype) -> Any:
    """Load `state` strictly into a meta-built module (assign), cast, eval. Raises DataRejected."""
    try:
        module.load_state_dict(state, strict=True, assign=True)
    except RuntimeError:
        raise DataRejected(_MISMATCH) from None
    return module.to(dtype).eval()


def _text_encoder_state(state: dict[str, torch.Tensor], flattened: bool) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not key.startswith(CLIP_PREFIX):
            continue
        name = key[len(CLIP_PREFIX):]
        if not name.startswith("text_model."):
            name = "text_model." + name  # very old files lack the text_model level
        if name.endswith("embeddings.position_ids"):
            continue  # a non-persistent buffer in current transformers
        out[name[len("text_model."):] if flattened else name] = value
    return out


def load_single_file(header: SafetensorsHeader, path: Path, dtype: torch.dtype,
                     tokenizer_dir: Path | None) -> tuple[Parts, tuple[Path, ...]]:
    """Build UNet, VAE, CLIP text encoder and tokenizer from a validated single-file checkpoint.

    Raises DataRejected for SD2/SDXL, missing parts, malformed `secure_trainer.*` metadata or
    weights that do not fit; ConfigError (via require_tokenizer) if no tokenizer can be found.
    """
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
    )
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    from transformers import CLIPTextConfig, CLIPTextModel

    _family_check(set(header.tensors))
    cfgs = embedded_configs(header.metadata, fmt=FORMAT_SD1_LDM, keys=META_CONFIGS,
                            bundled=sd15_config)
    te_cfg = {k: v for k, v in cfgs["text_encoder"].items()
              if not k.startswith("_") and k not in ("architectures", "model_type")}
    if not 0 < int(te_cfg.get("max_position_embeddings", 77)) <= _MAX_POSITIONS:
        raise DataRejected("malformed secure_trainer config metadata in the checkpoint")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError):
        raise DataRejected("could not read the checkpoint's tensors") from None
    try:
        unet_sd = convert_ldm_unet_checkpoint(state, cfgs["unet"])
        vae_sd = convert_ldm_vae_checkpoint(state, cfgs["vae"])
    except (KeyError, IndexError, TypeError, ValueError):
        raise DataRejected(_MISMATCH) from None
    try:
        with init_empty_weights():
            unet = UNet2DConditionModel.from_config(cfgs["unet"])
            vae = AutoencoderKL.from_config(cfgs["vae"])
            text_encoder = CLIPTextModel(CLIPTextConfig(**te_cfg))
    except (TypeError, ValueError, KeyError):
        raise DataRejected("malformed model config for the checkpoint") from None
    flattened = not hasattr(text_encoder, "text_model")
    te_sd = _text_encoder_state(state, flattened)
    del state
    unet, vae = fill_module(unet, unet_sd, dtype), fill_module(vae, vae_sd, dtype)
    text_encoder = fill_module(text_encoder, te_sd, dtype)
    # Resolved last, so a file that does not fit is reported as such, not as a tokenizer problem.
    parts = Parts(unet=unet, vae=vae, text_encoder=text_encoder,
                  tokenizer=tokenizer_from(header.metadata, tokenizer_dir))
    return parts, (path,)


def load_vae_file(header: SafetensorsHeader, path: Path, vae_config: dict[str, Any],
                  dtype: torch.dtype) -> Any:
    """A VAE from a validated `.safetensors`: LDM keys (with or without `first_stage_model.`)
    or diffusers keys, for the same architecture as `vae_config`. Raises DataRejected."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    del header
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError):
        raise DataRejected("could not read the VAE's tensors") from None
    if not any(".down_blocks." in k for k in state):
        try:
            state = convert_ldm_vae_checkpoint(state, vae_config)
        except (KeyError, IndexError, TypeError, ValueError):
            raise DataRejected("the VAE does not match the base model's VAE") from None
    cfg = {k: v for k, v in vae_config.items() if not k.startswith("_")}
    with init_empty_weights():
        vae = AutoencoderKL.from_config(cfg)
    try:
        vae.load_state_dict(state, strict=True, assign=True)
    except RuntimeError:
        raise DataRejected("the VAE does not match the base model's VAE") from None
    return vae.to(dtype).eval()
