"""`train-llm` settings: a LLaMA-Factory-style YAML plus `--key value` flags → one frozen dataclass.

Field names follow LLaMA-Factory's LoRA SFT recipe (and Hugging Face TrainingArguments) where
they overlap; flags use the same snake_case names and override the YAML. Unknown keys are an
error naming the key (a typo must not silently train something else); LLaMA-Factory keys we do
not implement are an error saying so. Never reads the model or the data; never puts a value
in an error message (values may be paths).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from secure_trainer.errors import ConfigError

Template = Literal["auto", "chat", "alpaca"]
DpUnit = Literal["subject", "record"]
Scheduler = Literal["linear", "cosine", "constant", "constant_with_warmup"]

# LLaMA-Factory / TrainingArguments keys that change what is trained or where data goes, and
# that we do not implement: refused by name rather than reported as unknown.
UNSUPPORTED_KEYS = frozenset({
    "packing", "neat_packing", "deepspeed", "quantization_bit",
    "quantization_method", "fp16", "use_dora", "pissa_init", "loraplus_lr_ratio",
    "additional_target", "lora_dropout_rate", "adapter_name_or_path", "push_to_hub",
    "hub_model_id", "val_size", "eval_dataset", "predict_with_generate", "mask_history",
    "train_on_prompt", "streaming", "tokenized_path", "flash_attn", "rope_scaling",
})
# Keys of stock LLaMA-Factory / TrainingArguments configs that only tune speed, logging or
# evaluation we do not run: ignored with one warning naming the key, so such configs run.
IGNORED_KEYS = frozenset({
    "preprocessing_num_workers", "dataloader_num_workers", "dataloader_pin_memory",
    "overwrite_cache", "plot_loss", "ddp_timeout", "save_only_model", "save_total_limit",
    "include_num_input_tokens_seen", "disable_tqdm", "logging_dir", "eval_strategy",
    "eval_steps", "per_device_eval_batch_size", "trust_remote_code",
})
Warn = Callable[[str], None]


@dataclass(frozen=True)
class LlmTrainConfig:
    """Everything one `train-llm` run needs, validated (see `__post_init__`)."""

    model_name_or_path: Path
    """A local Hugging Face causal-LM folder with safetensors weights (never a hub id)."""
    dataset: Path
    """A JSONL file in the alpaca or chat format (relative paths resolve in dataset_dir)."""
    output_dir: Path
    """Where the PEFT adapter is written."""
    dataset_dir: Path | None = None
    stage: str = "sft"
    do_train: bool = True
    finetuning_type: str = "lora"
    template: Template = "auto"
    """auto: the tokenizer's chat template when it has one, else alpaca prompts."""
    cutoff_len: int = 2048
    max_samples: int | None = None
    lora_rank: int = 8
    lora_alpha: int | None = None
    """None ⇒ 2 × lora_rank (LLaMA-Factory's default)."""
    lora_dropout: float = 0.0
    lora_target: str = "all"
    """"all" (every linear layer but the output head) or comma-separated module names."""
    learning_rate: float = 5e-5
    num_train_epochs: float = 3.0
    max_steps: int = -1
    """> 0 overrides num_train_epochs (as in TrainingArguments)."""
    per_device_train_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    lr_scheduler_type: Scheduler = "linear"
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    """Gradient clipping norm; with dp, the per-unit clipping bound C."""
    bf16: bool = False
    gradient_checkpointing: bool = False
    seed: int = 42
    logging_steps: int = 10
    overwrite_output_dir: bool = False
    save_steps: int = 0
    """> 0: write a training state to output_dir/checkpoint-<step> every this many steps."""
    resume_from_checkpoint: Path | None = None
    """A checkpoint-<step> folder of an earlier run of the same config (continues it)."""
    report_to: str = "none"
    warmup_steps: int = 0
    """> 0 overrides warmup_ratio (as in TrainingArguments)."""
    optim: str = "adamw_torch"
    subject_field: str = "subject"
    dp: bool = False
    target_epsilon: float | None = None
    delta: float | None = None
    noise_multiplier: float | None = None
    dp_unit: DpUnit = "subject"
    accountant: Literal["rdp", "prv"] = "rdp"
    canaries: int = 0
    """Plant this many random canary secrets (repeated 1, 4, 16, ... times) for `audit canary`."""

    def __post_init__(self) -> None:
        """Cross-field rules; raises ConfigError naming the key."""
        _require(self.stage == "sft", "stage", "only 'sft' is supported")
        _require(self.do_train, "do_train", "must be true")
        _require(self.finetuning_type == "lora", "finetuning_type", "only 'lora' is supported")
        _require(self.template in ("auto", "chat", "alpaca"), "template",
                 "use auto, chat (the model's own chat template) or alpaca")
        _require(self.report_to in ("none", ""), "report_to",
                 "must be none (no experiment tracker may receive training data)")
        _require(self.optim in ("adamw_torch", "adamw"), "optim", "only adamw_torch is supported")
        _require(self.warmup_steps >= 0, "warmup_steps", "must be 0 or more")
        for key in ("cutoff_len", "lora_rank", "per_device_train_batch_size",
                    "gradient_accumulation_steps", "logging_steps"):
            _require(getattr(self, key) >= 1, key, "must be at least 1")
        _require(self.max_samples is None or self.max_samples >= 1, "max_samples",
                 "must be at least 1")
        _require(0.0 <= self.lora_dropout < 1.0, "lora_dropout", "must be in [0, 1)")
        _require(self.lora_alpha is None or self.lora_alpha > 0, "lora_alpha", "must be positive")
        _require(self.learning_rate > 0 and math.isfinite(self.learning_rate), "learning_rate",
                 "must be positive")
        _require(self.num_train_epochs > 0 or self.max_steps > 0, "num_train_epochs",
                 "must be positive (or set max_steps)")
        _require(0.0 <= self.warmup_ratio < 1.0, "warmup_ratio", "must be in [0, 1)")
        _require(self.max_grad_norm > 0, "max_grad_norm", "must be positive")
        _require(self.lr_scheduler_type in ("linear", "cosine", "constant",
                                            "constant_with_warmup"),
                 "lr_scheduler_type", "use linear, cosine, constant or constant_with_warmup")
        _require(self.dp_unit in ("subject", "record"), "dp_unit", "use subject or record")
        _require(self.accountant in ("rdp", "prv"), "accountant", "use rdp or prv")
        _require(self.canaries >= 0, "canaries", "must be 0 or more")
        _require(self.save_steps >= 0, "save_steps", "must be 0 or more")
        if self.resume_from_checkpoint is not None:
            # A resumed DP run would need the spent budget carried over, a canary run the same
            # (randomly drawn) canaries: neither is stored in a checkpoint yet.
            _require(not self.dp, "resume_from_checkpoint", "cannot be combined with dp yet")
            _require(self.canaries == 0, "resume_from_checkpoint",
                     "cannot be combined with canaries")
        if self.dp:
            _require((self.target_epsilon is None) != (self.noise_multiplier is None),
                     "target_epsilon", "dp needs exactly one of target_epsilon or "
                                       "noise_multiplier")
            _require(self.target_epsilon is None or self.target_epsilon > 0, "target_epsilon",
                     "must be positive")
            _require(self.delta is None or 0 < self.delta < 1, "delta", "must be in (0, 1)")
            _require(self.gradient_accumulation_steps == 1, "gradient_accumulation_steps",
                     "must be 1 with dp (units run one at a time; raise "
                     "per_device_train_batch_size instead)")

    @property
    def alpha(self) -> int:
        """The effective LoRA alpha."""
        return self.lora_alpha if self.lora_alpha is not None else 2 * self.lora_rank

    @property
    def dataset_path(self) -> Path:
        """`dataset`, resolved inside `dataset_dir` when it is relative and a dir is given."""
        if self.dataset_dir is not None and not self.dataset.is_absolute():
            return self.dataset_dir / self.dataset
        return self.dataset


def _require(ok: bool, key: str, why: str) -> None:
    if not ok:
        raise ConfigError(f"option '{key}' {why}")


def _to_bool(key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ConfigError(f"option '{key}' must be true or false")


def _convert(key: str, kind: str, value: object) -> object:
    """`value` (from YAML or a flag string) as the field's type; ConfigError names the key."""
    optional = kind.endswith(" | None")
    base = kind.removesuffix(" | None")
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none",
                                                                                   "null")):
        if optional:
            return None
        raise ConfigError(f"option '{key}' needs a value")
    try:
        if base == "bool":
            return _to_bool(key, value)
        if base == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)  # type: ignore[call-overload]
        if base == "float":
            return float(value)  # type: ignore[arg-type]
        if base == "Path":
            return Path(str(value))
        if isinstance(value, (list, tuple)):  # lora_target may be a YAML list
            return ",".join(str(v) for v in value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"option '{key}' has a value of the wrong type") from None


_FIELDS: Mapping[str, str] = {f.name: str(f.type) for f in fields(LlmTrainConfig)}


def check_keys(keys: Sequence[str]) -> None:
    """Raise ConfigError for the first key no field has (or that we refuse by design)."""
    for key in keys:
        if key in IGNORED_KEYS:
            continue
        if key in UNSUPPORTED_KEYS:
            raise ConfigError(f"option '{key}' is not supported by train-llm")
        if key not in _FIELDS:
            raise ConfigError(f"unknown option '{key}' in the train-llm config")


def build_config(raw: Mapping[str, object], warn: Warn | None = None) -> LlmTrainConfig:
    """Typed settings from one merged mapping of keys to raw values.

    Raises ConfigError for unknown/unsupported keys, wrong types, missing required keys
    (model_name_or_path, dataset, output_dir) and the rules of `LlmTrainConfig`.
    """
    ignored = sorted(k for k in raw if k in IGNORED_KEYS)
    if ignored and warn is not None:
        # SECURITY: trust_remote_code is among them: model code from a folder is never run.
        warn(f"ignoring option(s) {', '.join(ignored)} (they do not change what is trained; "
             "trust_remote_code is never honoured)")
    raw = {k: v for k, v in raw.items() if k not in IGNORED_KEYS}
    check_keys(list(raw))
    values = {k: _convert(k, _FIELDS[k], v) for k, v in raw.items()}
    for required in ("model_name_or_path", "dataset", "output_dir"):
        if values.get(required) is None:
            raise ConfigError(f"option '{required}' is required")
    return LlmTrainConfig(**values)  # type: ignore[arg-type]


def load_yaml(path: Path) -> dict[str, object]:
    """The YAML config as a mapping. Raises ConfigError when unreadable or not a mapping."""
    import yaml

    try:
        loaded: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError:
        raise ConfigError("cannot read the train-llm config file") from None
    except yaml.YAMLError:
        raise ConfigError("the train-llm config file is not valid YAML") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict) or not all(isinstance(k, str) for k in loaded):
        raise ConfigError("the train-llm config file must be a mapping of option names")
    return dict(loaded)


def parse_flags(args: Sequence[str]) -> dict[str, object]:
    """`--key value`, `--key=value` and bare boolean `--key` → a mapping (strings as given).

    Raises ConfigError for a token that is not a flag or an unknown key.
    """
    out: dict[str, object] = {}
    i = 0
    while i < len(args):
        token = args[i]
        if not token.startswith("--") or len(token) < 3:
            raise ConfigError("train-llm takes one config file and --key value flags")
        key, eq, value = token[2:].partition("=")
        check_keys([key])
        if eq:
            out[key] = value
            i += 1
            continue
        bare_ok = key in IGNORED_KEYS or _FIELDS[key] == "bool"
        nxt = args[i + 1] if i + 1 < len(args) else None
        if nxt is None or nxt.startswith("--"):
            if not bare_ok:
                raise ConfigError(f"option '{key}' needs a value")
            out[key] = True
            i += 1
        else:
            out[key] = nxt
            i += 2
    return out


def load_config(config_file: Path | None, flags: Sequence[str],
                warn: Warn | None = None) -> LlmTrainConfig:
    """YAML (optional) overridden by flags → validated settings; ignored keys are warned
    through `warn`. Raises ConfigError."""
    merged: dict[str, object] = load_yaml(config_file) if config_file is not None else {}
    merged.update(parse_flags(flags))
    return build_config(merged, warn)
