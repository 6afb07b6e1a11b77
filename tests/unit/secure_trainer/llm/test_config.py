"""train-llm config: LLaMA-Factory YAML keys, flag overrides, refusals naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from secure_trainer.errors import ConfigError
from secure_trainer.llm.config import build_config, load_config, parse_flags

BASE = {"model_name_or_path": "/m", "dataset": "d.jsonl", "output_dir": "/o"}


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_llama_factory_recipe_parses(tmp_path: Path) -> None:
    cfg = load_config(_yaml(tmp_path, """
model_name_or_path: /models/llama
stage: sft
do_train: true
finetuning_type: lora
lora_rank: 16
lora_alpha: 32
lora_dropout: 0.05
lora_target: all
dataset: train.jsonl
dataset_dir: /data
template: auto
cutoff_len: 1024
learning_rate: 1.0e-4
num_train_epochs: 3.0
per_device_train_batch_size: 2
gradient_accumulation_steps: 8
lr_scheduler_type: cosine
warmup_ratio: 0.1
output_dir: /out
bf16: true
gradient_checkpointing: true
seed: 7
"""), [])
    assert cfg.lora_rank == 16 and cfg.alpha == 32.0 and cfg.lora_dropout == 0.05
    assert cfg.dataset_path == Path("/data/train.jsonl")
    assert cfg.learning_rate == 1e-4 and cfg.num_train_epochs == 3.0
    assert cfg.bf16 and cfg.gradient_checkpointing and cfg.seed == 7
    assert cfg.lr_scheduler_type == "cosine" and cfg.gradient_accumulation_steps == 8


def test_flags_override_yaml(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "model_name_or_path: /m\ndataset: d.jsonl\noutput_dir: /o\n"
                           "lora_rank: 8\nbf16: true\n")
    cfg = load_config(path, ["--lora_rank", "4", "--bf16=false", "--gradient_checkpointing",
                             "--learning_rate", "1e-3"])
    assert cfg.lora_rank == 4 and not cfg.bf16 and cfg.gradient_checkpointing
    assert cfg.learning_rate == 1e-3
    assert cfg.alpha == 8.0  # default alpha = 2 × rank


@pytest.mark.parametrize(("raw", "key"), [
    ({"lora_rnak": 4}, "lora_rnak"),
    ({"packing": True}, "packing"),
    ({"lora_rank": "four"}, "lora_rank"),
    ({"finetuning_type": "full"}, "finetuning_type"),
    ({"optim": "adafactor"}, "optim"),
    ({"report_to": "wandb"}, "report_to"),
    ({"template": "llama3"}, "template"),
    ({"dp": True}, "target_epsilon"),
    ({"dp": True, "target_epsilon": 8, "gradient_accumulation_steps": 2},
     "gradient_accumulation_steps"),
    ({"warmup_ratio": 1.5}, "warmup_ratio"),
    ({"resume_from_checkpoint": "/c", "dp": True, "target_epsilon": 8},
     "resume_from_checkpoint"),
    ({"resume_from_checkpoint": "/c", "canaries": 3}, "resume_from_checkpoint"),
])
def test_bad_keys_name_the_key(raw: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_config({**BASE, **raw})
    assert f"'{key}'" in str(err.value)
    assert "/m" not in str(err.value) and "/o" not in str(err.value)


def test_missing_required_key() -> None:
    with pytest.raises(ConfigError, match="'output_dir'"):
        build_config({"model_name_or_path": "/m", "dataset": "d"})


def test_flag_parsing_rules() -> None:
    assert parse_flags(["--dp", "--target_epsilon", "8"]) == {"dp": True, "target_epsilon": "8"}
    with pytest.raises(ConfigError, match="'lora_rank' needs a value"):
        parse_flags(["--lora_rank"])
    with pytest.raises(ConfigError, match="unknown option 'nope'"):
        parse_flags(["--nope", "1"])
    with pytest.raises(ConfigError):
        parse_flags(["stray"])


def test_dp_settings() -> None:
    cfg = build_config({**BASE, "dp": "true", "target_epsilon": "8", "dp_unit": "record",
                        "delta": "1e-5", "max_grad_norm": "0.5"})
    assert cfg.dp and cfg.target_epsilon == 8.0 and cfg.dp_unit == "record"
    assert cfg.delta == 1e-5 and cfg.max_grad_norm == 0.5
    with pytest.raises(ConfigError, match="'dp_unit'"):
        build_config({**BASE, "dp_unit": "person"})


def test_stock_llama_factory_keys_are_ignored_with_one_warning(tmp_path: Path) -> None:
    warnings: list[str] = []
    path = _yaml(tmp_path, "model_name_or_path: /m\ndataset: d.jsonl\noutput_dir: /o\n"
                           "trust_remote_code: true\npreprocessing_num_workers: 16\n"
                           "plot_loss: true\nddp_timeout: 180000000\nwarmup_steps: 3\n"
                           "optim: adamw_torch\n")
    cfg = load_config(path, ["--overwrite_cache", "--dataloader_num_workers", "4"],
                      warn=warnings.append)
    assert cfg.warmup_steps == 3 and not hasattr(cfg, "trust_remote_code")
    assert len(warnings) == 1
    for key in ("trust_remote_code", "preprocessing_num_workers", "plot_loss", "ddp_timeout",
                "overwrite_cache", "dataloader_num_workers"):
        assert key in warnings[0]
