"""The adapter's safetensors metadata: hyper-parameters and DP figures, nothing about the data.

Keys are `st_*` (ours) plus `ss_dp_*` from privacy/dp_record.py in redacted mode (δ rounded up
to a power of ten, no sampling rate or unit count, since those reveal the dataset size).
SECURITY: never a path, model name, record count, subject or text.
"""

from __future__ import annotations

from secure_trainer import __version__
from secure_trainer.llm.config import LlmTrainConfig
from secure_trainer.privacy.dp_record import DPRecord
from secure_trainer.settings import MetadataMode


def adapter_metadata(config: LlmTrainConfig, template: str,
                     record: DPRecord | None) -> dict[str, str]:
    """String metadata for `adapter_model.safetensors`."""
    meta = {
        "st_trainer": f"secure-trainer {__version__} train-llm",
        "st_finetuning_type": "lora",
        "st_lora_rank": str(config.lora_rank),
        "st_lora_alpha": f"{config.alpha:g}",
        "st_lora_dropout": f"{config.lora_dropout:g}",
        "st_template": template,
        "st_learning_rate": f"{config.learning_rate:g}",
        "st_cutoff_len": str(config.cutoff_len),
        "st_dp": "True" if record is not None else "False",
    }
    if record is not None:
        meta.update(record.to_metadata(MetadataMode.REDACTED))
    return meta
