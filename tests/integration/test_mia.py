"""`audit mia` on the tiny model: it detects an over-fitted LoRA, is near chance when neither
side was trained on, writes a redacted JSON + PNG report, and rejects bad inputs with one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from train_support import private_strings

from entrypoint.cli import main
from secure_trainer.devtools.audit_model import calibrate_vae
from secure_trainer.devtools.synthetic_dataset import make_dataset, make_holdout
from secure_trainer.kohya.config import parse_train_args
from secure_trainer.privacy.mia import MiaSettings, run_audit
from secure_trainer.train.loop import train

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("one_thread")]



@pytest.fixture(scope="module")
def overfit(tiny_model: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An over-fitted LoRA (8 images, many steps, high lr) and three same-distribution sets."""
    root = tmp_path_factory.mktemp("mia")
    model = calibrate_vae(tiny_model.diffusers_dir, root / "model")
    members = make_dataset(root / "members", per_subset=4, textured=True)
    holdout = make_holdout(root / "holdout", per_subset=4, textured=True)
    unseen = make_dataset(root / "unseen", seed=99, per_subset=4, textured=True)
    torch.set_num_threads(1)
    settings = parse_train_args([
        "--pretrained_model_name_or_path", str(model), "--train_data_dir", str(members),
        "--caption_extension", ".txt", "--resolution", "64", "--output_dir", str(root / "out"),
        "--output_name", "overfit", "--seed", "1", "--network_dim", "16", "--network_alpha", "16",
        "--learning_rate", "5e-3", "--train_batch_size", "4", "--max_train_steps", "150",
        "--cache_latents"], warn=lambda _m: None)
    result = train(settings, warn=lambda _m: None)
    assert result.lora_path is not None
    return {"model": model, "members": members, "holdout": holdout, "unseen": unseen,
            "lora": result.lora_path, "root": root}


def test_audit_detects_the_overfitted_lora(overfit: dict[str, Path],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = overfit["root"] / "report"
    code = main(["audit", "mia", "--lora", str(overfit["lora"]), "--base", str(overfit["model"]),
                 "--members", str(overfit["members"]), "--holdout", str(overfit["holdout"]),
                 "--caption-extension", ".txt", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mia: AUC ")
    report = json.loads((out / "overfit.mia.json").read_text(encoding="utf-8"))
    assert (out / "overfit.mia-roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["members"] == 8 and report["holdout"] == 8
    assert report["metrics"]["auc"]["value"] > 0.8
    assert report["metrics"]["auc"]["low"] > 0.5  # clearly above chance, CI included
    assert report["member_score_mean"] > report["holdout_score_mean"]
    assert report["dp_epsilon"] is None
    # Nothing that names or quotes the data, on the terminal or in the report.
    private = private_strings(overfit["members"]) | private_strings(overfit["holdout"])
    text = captured.out + captured.err + json.dumps(report)
    assert not {p for p in private if p in text}
    assert str(overfit["root"]) not in text


def test_audit_is_near_chance_when_neither_side_was_trained_on(
        overfit: dict[str, Path]) -> None:
    report = run_audit(MiaSettings(lora=overfit["lora"], base=overfit["model"],
                                   members=overfit["unseen"], holdout=overfit["holdout"],
                                   caption_extension=".txt", bootstrap=300))
    auc = report.metrics.auc
    assert abs(auc.value - 0.5) <= 0.3 and auc.low < 0.5 < auc.high


def test_bad_inputs_fail_with_one_line_and_no_path(overfit: dict[str, Path],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    root = overfit["root"]
    few = root / "few"
    (few / "1_x").mkdir(parents=True, exist_ok=True)
    for image in sorted((overfit["members"] / "10_subject").glob("*.png"))[:2]:
        shutil.copy(image, few / "1_x" / image.name)
    ckpt = root / "lora.ckpt"
    ckpt.write_bytes(b"\x80\x04not a safetensors file")
    pickle_base = root / "base.ckpt"
    pickle_base.write_bytes(b"\x80\x04pickle")
    good = {"--lora": str(overfit["lora"]), "--base": str(overfit["model"]),
            "--members": str(overfit["members"]), "--holdout": str(overfit["holdout"])}
    cases = [({"--members": str(root / "missing")}, 8), ({"--holdout": str(few)}, 8),
             ({"--lora": str(ckpt)}, 8), ({"--base": str(pickle_base)}, 8),
             ({"--timesteps": "0"}, 2)]
    for change, expected in cases:
        args = {**good, **change}
        argv = ["audit", "mia", "--caption-extension", ".txt", "--out", str(root / "bad")]
        for key, value in args.items():
            argv += [key, value]
        assert main(argv) == expected, change
        captured = capsys.readouterr()
        assert captured.out == ""
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error["), change
        assert str(root) not in captured.err
        assert "lora.ckpt" not in captured.err and "base.ckpt" not in captured.err
    assert not (root / "bad").exists()
