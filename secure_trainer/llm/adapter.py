"""Wrap a frozen causal LM in a PEFT LoRA adapter as the config asks.

`lora_target: all` means every linear layer except the output head (peft's "all-linear");
otherwise a comma-separated list of module names. Raises ConfigError when no module matches.
Never touches the base weights (they stay frozen and are never saved).
"""

from __future__ import annotations

from typing import Any

from secure_trainer.errors import ConfigError
from secure_trainer.llm.config import LlmTrainConfig


def target_modules(config: LlmTrainConfig) -> str | list[str]:
    """peft's `target_modules` for the config's `lora_target`."""
    if config.lora_target.strip() == "all":
        return "all-linear"
    names = [n.strip() for n in config.lora_target.split(",") if n.strip()]
    if not names:
        raise ConfigError("option 'lora_target' is empty")
    return names


def add_lora(model: Any, config: LlmTrainConfig) -> Any:
    """A `PeftModel` with a fresh LoRA (rank, alpha, dropout, targets from `config`)."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=config.lora_rank, lora_alpha=config.alpha,
                      lora_dropout=config.lora_dropout, target_modules=target_modules(config),
                      bias="none", task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, lora)
    except ValueError:
        # peft raises ValueError when no module matches the targets
        raise ConfigError("option 'lora_target' matches no module of the model") from None
