"""train-llm end to end on the tiny Llama: the adapter peft loads changes the logits, merging
equals the unmerged model, metadata is redacted; the CLI refuses pickles (8) and unknown keys
(2) with one line, and prints numbers only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from secure_trainer.devtools.synthetic_text import make_text_dataset
from secure_trainer.devtools.tiny_llm import make_tiny_llm
from secure_trainer.llm.config import build_config
from secure_trainer.llm.train import train_llm
from secure_trainer.train.progress import NullProgress

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("llm")
    model = make_tiny_llm(root / "model").model_dir
    make_text_dataset(root / "data", subjects=6, per_subject=3)
    return model, root / "data"


@pytest.fixture(scope="module")
def trained(fixtures: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Any:
    model, data = fixtures
    out = tmp_path_factory.mktemp("adapter")
    config = build_config({"model_name_or_path": str(model), "dataset": "chat.jsonl",
                           "dataset_dir": str(data), "output_dir": str(out),
                           "lora_rank": 4, "learning_rate": 2e-2, "max_steps": 6,
                           "per_device_train_batch_size": 4, "cutoff_len": 96, "seed": 3})
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the CI box has 2 shared cores
    try:
        return train_llm(config, progress=NullProgress(), warn=lambda _m: None)
    finally:
        torch.set_num_threads(before)


def _base(model_dir: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True,
                                                use_safetensors=True).eval()


def test_adapter_loads_changes_logits_and_merges(fixtures: tuple[Path, Path],
                                                 trained: Any) -> None:
    from peft import PeftModel

    model_dir, _ = fixtures
    assert trained.steps == 6 and trained.final_loss == trained.final_loss  # finite
    ids = torch.tensor([[5, 17, 42, 99, 7, 3, 250]])
    with torch.no_grad():
        base_logits = _base(model_dir)(input_ids=ids).logits
        peft_model = PeftModel.from_pretrained(_base(model_dir), trained.adapter_dir).eval()
        adapted = peft_model(input_ids=ids).logits
        merged = peft_model.merge_and_unload()(input_ids=ids).logits
    assert (adapted - base_logits).abs().max() > 1e-3
    torch.testing.assert_close(merged, adapted, atol=1e-5, rtol=1e-4)


def test_adapter_files_are_redacted(fixtures: tuple[Path, Path], trained: Any) -> None:
    from safetensors import safe_open

    model_dir, data_dir = fixtures
    out = trained.adapter_dir
    assert sorted(p.name for p in out.iterdir()) == ["adapter_config.json",
                                                     "adapter_model.safetensors"]
    config_text = (out / "adapter_config.json").read_text()
    assert json.loads(config_text)["base_model_name_or_path"] is None
    with safe_open(str(out / "adapter_model.safetensors"), framework="pt") as fh:
        meta = fh.metadata()
        assert all("lora_" in k for k in fh.keys())  # noqa: SIM118
    assert meta["st_lora_rank"] == "4" and meta["st_dp"] == "False"
    blob = config_text + json.dumps(meta)
    for private in (str(model_dir), str(data_dir), "chat.jsonl", "subj-", "ana"):
        assert private not in blob


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from entrypoint.cli import main

    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_trains_and_prints_numbers_only(fixtures: tuple[Path, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    model, data = fixtures
    config = tmp_path / "llm.yaml"
    config.write_text(f"model_name_or_path: {model}\ndataset: {data / 'alpaca.jsonl'}\n"
                      f"output_dir: {tmp_path / 'out'}\nfinetuning_type: lora\nlora_rank: 2\n"
                      "cutoff_len: 64\nnum_train_epochs: 1\nper_device_train_batch_size: 8\n")
    code, out, err = _cli(["train-llm", str(config), "--max_steps", "2", "--progress-every",
                           "1"], capsys)
    assert code == 0, err
    assert out.startswith("trained 2 steps") and len(out.splitlines()) == 1
    assert "step 2/2" in err
    for private in (str(tmp_path), str(model), "alpaca", "subj-", "lives in"):
        assert private not in out + err
    code, _, err = _cli(["train-llm", str(config), "--max_steps", "1"], capsys)
    assert code == 2 and "overwrite_output_dir" in err  # refuses to replace an adapter


def test_cli_refuses_unknown_key_and_pickles(fixtures: tuple[Path, Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    model, data = fixtures
    args = ["train-llm", "--model_name_or_path", str(model), "--dataset",
            str(data / "chat.jsonl"), "--output_dir", str(tmp_path / "o")]
    code, _, err = _cli([*args, "--lora_rnak", "4"], capsys)
    assert code == 2 and err.strip() == "error[config]: unknown option 'lora_rnak' in the " \
                                        "train-llm config"
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    for item in model.iterdir():
        (pickled / item.name).write_bytes(item.read_bytes())
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04K\x01.")
    args[2] = str(pickled)
    code, _, err = _cli(args, capsys)
    assert code == 8 and err.startswith("error[data]: refusing a pickle checkpoint")
    assert str(pickled) not in err and len(err.strip().splitlines()) == 1


def test_bf16_checkpointing_accumulation_alpaca(fixtures: tuple[Path, Path],
                                                tmp_path: Path) -> None:
    from safetensors import safe_open

    model, data = fixtures
    config = build_config({"model_name_or_path": str(model), "dataset": "alpaca.jsonl",
                           "dataset_dir": str(data), "output_dir": str(tmp_path / "o"),
                           "template": "alpaca", "bf16": True, "gradient_checkpointing": True,
                           "gradient_accumulation_steps": 2, "per_device_train_batch_size": 2,
                           "lora_target": "q_proj,v_proj", "lora_rank": 2, "max_steps": 2,
                           "cutoff_len": 64, "lr_scheduler_type": "constant_with_warmup",
                           "warmup_ratio": 0.5})
    result = train_llm(config, progress=NullProgress(), warn=lambda _m: None)
    assert result.steps == 2 and result.final_loss == result.final_loss
    with safe_open(str(tmp_path / "o" / "adapter_model.safetensors"), framework="pt") as fh:
        keys = list(fh.keys())
        assert fh.metadata()["st_template"] == "alpaca"
        assert all(fh.get_tensor(k).dtype == torch.float32 for k in keys)
    assert keys and all(("q_proj" in k or "v_proj" in k) for k in keys)


def test_resume_is_bit_identical(fixtures: tuple[Path, Path], tmp_path: Path,
                                 one_thread: None) -> None:
    from safetensors.torch import load_file

    model, data = fixtures
    common = {"model_name_or_path": str(model), "dataset": "chat.jsonl",
              "dataset_dir": str(data), "lora_rank": 2, "lora_dropout": 0.1,
              "learning_rate": 1e-2, "per_device_train_batch_size": 8, "cutoff_len": 128,
              "max_steps": 5, "lr_scheduler_type": "cosine", "warmup_ratio": 0.2, "seed": 5}
    # 19 records / batch 8 = 3 groups per epoch: checkpoint-2 is mid-epoch 1, and the resumed
    # run crosses into epoch 2 (a new shuffle) before it ends.
    straight = train_llm(build_config({**common, "output_dir": str(tmp_path / "a"),
                                       "save_steps": 2}),
                         progress=NullProgress(), warn=lambda _m: None)
    assert sorted(p.name for p in (tmp_path / "a").iterdir() if p.is_dir()) == [
        "checkpoint-2", "checkpoint-4"]
    resumed = train_llm(build_config({**common, "output_dir": str(tmp_path / "b"),
                                      "resume_from_checkpoint": str(tmp_path / "a" /
                                                                    "checkpoint-2")}),
                        progress=NullProgress(), warn=lambda _m: None)
    assert straight.steps == resumed.steps == 5 and resumed.epochs == 2
    a = load_file(str(tmp_path / "a" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "b" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert straight.final_loss == resumed.final_loss
