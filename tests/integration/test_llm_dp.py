"""train-llm --dp end to end on the tiny Llama: user-level (subject) DP-SGD records ε ≤ target
in the adapter metadata and `adapter_model.dp.json`, and prints only the figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from secure_trainer.devtools.synthetic_text import make_text_dataset
from secure_trainer.devtools.tiny_llm import make_tiny_llm

pytestmark = [pytest.mark.integration]


def test_dp_run_records_epsilon_within_target(tmp_path: Path, one_thread: None,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from peft import PeftModel
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    from entrypoint.cli import main
    from secure_trainer.privacy.dp_record import read_record

    model = make_tiny_llm(tmp_path / "model").model_dir
    make_text_dataset(tmp_path / "data", subjects=20, per_subject=2)
    out = tmp_path / "out"
    code = main(["train-llm", "--model_name_or_path", str(model), "--dataset",
                 str(tmp_path / "data" / "alpaca.jsonl"), "--output_dir", str(out),
                 "--lora_rank", "2", "--cutoff_len", "64", "--per_device_train_batch_size", "5",
                 "--max_steps", "4", "--learning_rate", "1e-2", "--dp", "--target_epsilon", "8",
                 "--max_grad_norm", "0.5", "--dp_unit", "subject", "--quiet"])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("trained 4 steps")
    assert lines[1].startswith("dp: ε=") and "unit subject" in lines[1]
    record = read_record(out / "adapter_model.safetensors")
    assert record is not None
    assert 0 < record.epsilon <= 8.0 and record.steps == 4
    assert record.privacy_unit == "subject" and record.max_grad_norm == 0.5
    assert record.num_images == 20  # 41 records of 20 subjects: 20 units
    with safe_open(str(out / "adapter_model.safetensors"), framework="pt") as fh:
        meta = fh.metadata()
    assert meta["ss_dp"] == "True" and float(meta["ss_dp_epsilon"]) <= 8.0
    assert meta["ss_dp_privacy_unit"] == "subject"
    assert "ss_dp_num_images" not in meta and "ss_dp_sampling_rate" not in meta
    assert json.loads((out / "adapter_model.dp.json").read_text())["target_epsilon"] == 8.0
    base = AutoModelForCausalLM.from_pretrained(model, local_files_only=True)
    PeftModel.from_pretrained(base, out)  # the DP adapter loads like any other
