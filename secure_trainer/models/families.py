"""Model-family architecture facts: the bundled configs and the metadata keys of our checkpoints.

Production code and developer fixtures both read the configs from here (`devtools/` imports
this module, never the reverse). Never downloads anything.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, Literal

Family = Literal["sd15", "sdxl"]
"""Model families with bundled configs under `secure_trainer/models/configs/<family>/`."""

# coupling: devtools/tiny_model.py writes these metadata keys, models/single_file.py reads them.
META_FORMAT = "secure_trainer.format"
META_UNET = "secure_trainer.unet_config"
META_VAE = "secure_trainer.vae_config"
META_TEXT_ENCODER = "secure_trainer.text_encoder_config"
META_VOCAB = "secure_trainer.tokenizer_vocab"
META_MERGES = "secure_trainer.tokenizer_merges"
FORMAT_SD1_LDM = "sd1-ldm"
FORMAT_SDXL_LDM = "sdxl-ldm"
META_TEXT_ENCODER_2 = "secure_trainer.text_encoder_2_config"
SD1_VAE_SCALE = 0.18215
SDXL_VAE_SCALE = 0.13025


def family_config(family: Family, name: str) -> dict[str, Any]:
    """One bundled architecture config (`unet`, `vae`, `text_encoder`, `scheduler`; SDXL also
    `text_encoder_2`) of `family`.

    Raises FileNotFoundError for a config the family does not bundle (a programming error).
    """
    text = (resources.files("secure_trainer") / "models" / "configs" / family
            / f"{name}_config.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def sd15_config(name: str) -> dict[str, Any]:
    """One of the bundled SD1.5 architecture configs (`unet`, `vae`, `text_encoder`, `scheduler`)."""
    return family_config("sd15", name)


def sdxl_config(name: str) -> dict[str, Any]:
    """One of the bundled SDXL 1.0 base configs (`unet`, `vae`, `text_encoder`,
    `text_encoder_2`, `scheduler`)."""
    return family_config("sdxl", name)
