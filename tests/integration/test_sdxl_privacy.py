"""SDXL with the privacy tools on the tiny SDXL model: `--dp` (DP-SGD) trains and records ε,
`audit mia` scores an SDXL LoRA, and `--cache_text_encoder_outputs_to_disk` writes its cache
under the run's output folder only and reuses it on the next run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open

from tests.integration.train_support import base_args, private_strings, write_dataset_config

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("one_thread")]
REFERENCE = Path(__file__).resolve().parent.parent / "data" / "kohya-sdxl-lora-dim16.json"


@pytest.fixture(scope="module")
def tiny_sdxl(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from secure_trainer.devtools.tiny_sdxl import make_tiny_sdxl

    return make_tiny_sdxl(tmp_path_factory.mktemp("tiny-sdxl"))


def _tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), "pt") as fh:
        return {k: fh.get_tensor(k) for k in fh.keys()}, dict(fh.metadata())  # noqa: SIM118


def test_dp_sgd_trains_sdxl_and_records_epsilon(tiny_sdxl: Any, tiny_dataset: Path,
                                                tmp_path: Path) -> None:
    from secure_trainer.kohya.config import parse_train_args
    from secure_trainer.privacy.dp_accounting import epsilon_after
    from secure_trainer.privacy.dp_record import read_record
    from secure_trainer.train.loop import train

    cfg = write_dataset_config(tiny_dataset, tmp_path / "ds.toml")
    argv = base_args(tiny_sdxl.diffusers_dir, cfg, tmp_path / "out", "--sdxl",
                     "--learning_rate", "1e-2", "--max_train_steps", "4", "--dp",
                     "--dp_target_epsilon", "8", "--mixed_precision", "bf16")
    result = train(parse_train_args(argv, warn=lambda _m: None), warn=lambda _m: None)
    assert result.lora_path is not None and result.steps == 4
    record = read_record(result.lora_path)
    assert record is not None and record.steps == 4 and record.num_images == 12
    assert record.epsilon == pytest.approx(epsilon_after(
        "rdp", record.noise_multiplier, record.sample_rate, 4, record.delta))
    assert 0 < record.epsilon <= 8.0
    tensors, meta = _tensors(result.lora_path)
    assert meta["ss_dp"] == "True" and 0 < float(meta["ss_dp_epsilon"]) <= 8.0
    assert meta["ss_base_model_version"].startswith("sdxl")
    # The file sd-scripts writes for SDXL (tiny widths, same names).
    reference = json.loads(REFERENCE.read_text(encoding="utf-8"))["tensors"]
    assert set(tensors) == set(reference)
    # Noised updates reached the UNet and both encoders ...
    for key in ("lora_unet_output_blocks_0_1_transformer_blocks_9_attn2_to_k.lora_up.weight",
                "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight",
                "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight"):
        assert tensors[key].abs().max() > 0, key
    # ... but not CLIP-L's unused last layer: no gradient, so no noise either (as sd-scripts).
    last = [k for k in tensors if k.startswith("lora_te1_") and "_layers_" in k
            and k.endswith("lora_up.weight")]
    top = max(int(k.split("_layers_")[1].split("_")[0]) for k in last)
    assert all(float(tensors[k].abs().max()) == 0 for k in last if f"_layers_{top}_" in k)
    assert not private_strings(tiny_dataset) & set(" ".join(meta.values()).split())


@pytest.fixture(scope="module")
def overfit_sdxl(tiny_sdxl: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An over-fitted SDXL LoRA (8 images, many steps, high lr) and its holdout set."""
    from secure_trainer.devtools.audit_model import calibrate_vae
    from secure_trainer.devtools.synthetic_dataset import make_dataset, make_holdout
    from secure_trainer.kohya.config import parse_train_args
    from secure_trainer.train.loop import train

    root = tmp_path_factory.mktemp("mia-sdxl")
    model = calibrate_vae(tiny_sdxl.diffusers_dir, root / "model")
    members = make_dataset(root / "members", per_subset=4, textured=True)
    holdout = make_holdout(root / "holdout", per_subset=4, textured=True)
    settings = parse_train_args([
        "--sdxl", "--pretrained_model_name_or_path", str(model), "--train_data_dir", str(members),
        "--caption_extension", ".txt", "--resolution", "64", "--output_dir", str(root / "out"),
        "--output_name", "overfit", "--seed", "1", "--network_dim", "16", "--network_alpha", "16",
        "--learning_rate", "1e-2", "--train_batch_size", "4", "--max_train_steps", "60",
        "--cache_latents", "--network_train_unet_only", "--cache_text_encoder_outputs"],
        warn=lambda _m: None)
    result = train(settings, warn=lambda _m: None)
    assert result.lora_path is not None
    return {"model": model, "members": members, "holdout": holdout, "lora": result.lora_path,
            "root": root}


def test_audit_mia_scores_an_sdxl_lora(overfit_sdxl: dict[str, Path],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from entrypoint.cli import main

    out = overfit_sdxl["root"] / "report"
    code = main(["audit", "mia", "--lora", str(overfit_sdxl["lora"]),
                 "--base", str(overfit_sdxl["model"]), "--members", str(overfit_sdxl["members"]),
                 "--holdout", str(overfit_sdxl["holdout"]), "--caption-extension", ".txt",
                 "--out", str(out), "--bootstrap", "300"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mia: AUC ")
    report = json.loads((out / "overfit.mia.json").read_text(encoding="utf-8"))
    assert report["members"] == 8 and report["holdout"] == 8 and report["resolution"] == 64
    # The over-fitted LoRA lowers its members' loss more than the holdout's: detected.
    assert report["member_score_mean"] > report["holdout_score_mean"]
    assert report["metrics"]["auc"]["value"] > 0.6  # 0.75 seen (60 steps, 8 vs 8 images)
    private = private_strings(overfit_sdxl["members"]) | private_strings(overfit_sdxl["holdout"])
    text = captured.out + captured.err + json.dumps(report)
    assert not {p for p in private if p in text}
    assert str(overfit_sdxl["root"]) not in text


def test_text_encoder_cache_on_disk_stays_in_the_output_folder_and_is_reused(
        tiny_sdxl: Any, tiny_dataset: Path, tmp_path: Path) -> None:
    from safetensors.torch import load, save

    from secure_trainer.data.te_cache import SUFFIX
    from secure_trainer.kohya.config import parse_train_args
    from secure_trainer.train.loop import train

    cfg = write_dataset_config(tiny_dataset, tmp_path / "ds.toml")
    out = tmp_path / "out"
    argv = base_args(tiny_sdxl.diffusers_dir, cfg, out, "--sdxl", "--max_train_steps", "2",
                     "--learning_rate", "1e-2", "--network_train_unet_only",
                     "--cache_text_encoder_outputs_to_disk", "--output_name", "c")
    data_before = sorted(p for p in tiny_dataset.rglob("*"))

    def run() -> dict[str, torch.Tensor]:
        result = train(parse_train_args(argv, warn=lambda _m: None), warn=lambda _m: None)
        assert result.lora_path == out / "c.safetensors"
        return _tensors(result.lora_path)[0]

    def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
        return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    fresh = run()
    folder = out / "c-te-cache"
    files = sorted(folder.iterdir())
    captions = {p.read_text(encoding="utf-8").strip() for p in tiny_dataset.rglob("*.txt")}
    assert len(files) == len(captions) and all(f.suffix == SUFFIX for f in files)
    assert sorted(p for p in tiny_dataset.rglob("*")) == data_before  # nothing next to images
    assert {p.name for p in out.iterdir()} == {"c.safetensors", "c-te-cache"}
    # The next run reads the files: outputs planted under the same keys change the LoRA ...
    for f in files:
        with safe_open(str(f), "pt") as fh:
            meta = dict(fh.metadata())
        tensors = load(f.read_bytes())
        f.write_bytes(save({k: v * 0 for k, v in tensors.items()}, metadata=meta))
    assert not same(run(), fresh)
    # ... while files that do not parse are recomputed: the LoRA is the fresh one again.
    for f in files:
        f.write_bytes(b"not a cache file")
    assert same(run(), fresh)
    assert all(len(load(f.read_bytes())) == 2 for f in files)
