"""DP-SGD on the tiny model: ε in the LoRA file and the JSON record, the budget stop, bounded
per-example updates in real training, and exit 2 with a reason for bad --dp configs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from train_support import base_args, private_strings, run_cli, write_dataset_config

from secure_trainer.kohya.config import parse_train_args
from secure_trainer.privacy.dp import DPTraining
from secure_trainer.privacy.dp_accounting import epsilon_after
from secure_trainer.privacy.dp_record import read_record
from secure_trainer.train.loop import train

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("one_thread")]



def _args(tiny_model: Any, tiny_dataset: Path, tmp_path: Path, *extra: str) -> list[str]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    cfg = write_dataset_config(tiny_dataset, tmp_path / "ds.toml")
    args: list[str] = base_args(tiny_model.diffusers_dir, cfg, tmp_path / "out",
                                "--learning_rate", "1e-3", *extra)
    return args


def _metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), "pt") as fh:
        return dict(fh.metadata())


def test_dp_run_records_epsilon_in_lora_and_record(tiny_model: Any, tiny_dataset: Path,
                                                   tmp_path: Path) -> None:
    argv = _args(tiny_model, tiny_dataset, tmp_path, "--max_train_steps", "6", "--dp",
                 "--dp_target_epsilon", "8")
    result = train(parse_train_args(argv, warn=lambda _m: None), warn=lambda _m: None)
    assert result.lora_path is not None and result.steps == 6
    meta = _metadata(result.lora_path)
    record = read_record(result.lora_path)
    assert record is not None and record.steps == 6 and record.num_images == 12
    assert record.delta == pytest.approx(1 / 144)  # default 1/N², N = 12 distinct images
    assert record.sample_rate == pytest.approx(1 / 3)  # 12 images, batch 4 ⇒ 3 steps/epoch
    recomputed = epsilon_after("rdp", record.noise_multiplier, record.sample_rate, 6, record.delta)
    assert record.epsilon == pytest.approx(recomputed)
    assert 7.0 < record.epsilon <= 8.0
    assert meta["ss_dp"] == "True" and 7.0 < float(meta["ss_dp_epsilon"]) <= 8.0
    assert float(meta["ss_dp_epsilon"]) >= record.epsilon  # published ε never understates
    assert float(meta["ss_dp_delta"]) >= record.delta
    assert meta["ss_dp_steps"] == "6" and meta["ss_dp_accountant"] == "rdp"
    # Redacted default: nothing that counts the private data.
    assert "ss_dp_sampling_rate" not in meta and "ss_dp_num_images" not in meta
    assert not private_strings(tiny_dataset) & set(" ".join(meta.values()).split())
    assert result.extra["ss_dp_epsilon"] == meta["ss_dp_epsilon"]
    with safe_open(str(result.lora_path), "pt") as fh:
        names = list(fh.keys())  # safe_open is not iterable
        ups = [fh.get_tensor(k) for k in names if k.endswith("lora_up.weight")]
    assert any(float(u.abs().max()) > 0 for u in ups)  # the noised updates were applied
    # PRV on request, FULL metadata shows the rate.
    argv = _args(tiny_model, tiny_dataset, tmp_path / "prv", "--max_train_steps", "3", "--dp",
                 "--dp_noise_multiplier", "1.0", "--dp_accountant", "prv", "--metadata", "full")
    result = train(parse_train_args(argv, warn=lambda _m: None), warn=lambda _m: None)
    assert result.lora_path is not None
    meta = _metadata(result.lora_path)
    assert meta["ss_dp_accountant"] == "prv"
    assert float(meta["ss_dp_sampling_rate"]) == pytest.approx(1 / 3)
    assert float(meta["ss_dp_epsilon"]) == pytest.approx(
        epsilon_after("prv", 1.0, 1 / 3, 3, 1 / 144), rel=1e-3)


def test_budget_stop_ends_training_with_a_message(tiny_model: Any, tiny_dataset: Path,
                                                  tmp_path: Path) -> None:
    argv = _args(tiny_model, tiny_dataset, tmp_path, "--max_train_steps", "9", "--dp",
                 "--dp_target_epsilon", "3")
    settings = parse_train_args(argv, warn=lambda _m: None)
    warnings: list[str] = []
    # σ calibrated for 3 steps while 9 are planned: the budget must end the run early.
    hooks = DPTraining(settings, warn=warnings.append, calibration_steps=3)
    result = train(settings, hooks=hooks, warn=warnings.append)
    assert 3 <= result.steps < 9
    assert result.steps == hooks.plan.budget_steps
    assert any(w.startswith("DP budget spent") for w in warnings)
    assert result.lora_path is not None
    meta = _metadata(result.lora_path)
    assert float(meta["ss_dp_epsilon"]) <= 3.0 and meta["ss_dp_steps"] == str(result.steps)
    record = read_record(result.lora_path)
    assert record is not None and record.budget_exhausted


class _NormProbe(DPTraining):
    """Records the norm of the gradient DP-SGD hands to the optimizer, per step."""

    norms: list[tuple[float, int]]
    stds: list[float]

    def run_batch(self, ctx: Any, dataset: Any, batch: Any, epoch: int, number: int) -> float:
        value = super().run_batch(ctx, dataset, batch, epoch, number)
        grads = [p.grad for p in self._params if p.grad is not None]
        norm = math.sqrt(sum(float(g.pow(2).sum()) for g in grads))
        self.norms.append((norm, len(batch.examples)))
        self.stds.append(float(torch.cat([g.flatten() for g in grads]).std()))
        return value


def test_real_training_gradient_carries_the_calibrated_noise(
        tiny_model: Any, tiny_dataset: Path, tmp_path: Path) -> None:
    sigma, clip = 4.0, 1e-2
    argv = _args(tiny_model, tiny_dataset, tmp_path, "--max_train_steps", "2", "--dp",
                 "--dp_noise_multiplier", str(sigma), "--dp_max_grad_norm", str(clip))
    settings = parse_train_args(argv, warn=lambda _m: None)
    probe = _NormProbe(settings, warn=lambda _m: None)
    probe.norms, probe.stds = [], []
    train(settings, hooks=probe, warn=lambda _m: None)
    # The clipped sum has norm ≤ n·C, spread over ~10⁵ entries: the noise σC/E dominates.
    for std in probe.stds:
        assert std == pytest.approx(sigma * clip / probe._expected_batch, rel=0.05)


def test_real_training_update_is_bounded_by_per_example_clipping(
        tiny_model: Any, tiny_dataset: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from secure_trainer.privacy import dp

    clip = 1e-3
    raw_norms: list[float] = []
    real_clip = dp.clip_into

    def recording_clip(params: Any, total: Any, max_norm: float) -> float:
        raw_norms.append(real_clip(params, total, max_norm))
        return raw_norms[-1]

    monkeypatch.setattr(dp, "clip_into", recording_clip)
    argv = _args(tiny_model, tiny_dataset, tmp_path, "--max_train_steps", "4", "--dp",
                 "--dp_noise_multiplier", "1e-9", "--dp_max_grad_norm", str(clip))
    settings = parse_train_args(argv, warn=lambda _m: None)
    probe = _NormProbe(settings, warn=lambda _m: None)
    probe.norms, probe.stds = [], []
    train(settings, hooks=probe, warn=lambda _m: None)
    assert len(probe.norms) == 4
    assert len(raw_norms) == sum(n for _, n in probe.norms)  # one clip per example
    assert min(raw_norms) > 10 * clip  # every example's own gradient is far above C
    for norm, examples in probe.norms:
        # ‖Σ clip(g_i)‖/E ≤ n·C/E: no example contributes more than C, whatever its gradient.
        assert norm <= examples * clip / probe._expected_batch * (1 + 1e-3) + 1e-9


@pytest.mark.parametrize(("extra", "reason"), [
    (["--dp", "--dp_target_epsilon", "8", "--dp_noise_multiplier", "1"], "exactly one of"),
    (["--dp", "--dp_target_epsilon", "0"], "must be positive"),
    (["--dp", "--dp_target_epsilon", "-1"], "must be positive"),
    (["--dp_target_epsilon", "8"], "needs --dp"),
    (["--dp", "--dp_noise_multiplier", "1", "--dp_delta", "0.1"], "dp_delta"),
    (["--dp", "--dp_noise_multiplier", "1", "--gradient_accumulation_steps", "2"],
     "gradient_accumulation_steps 1"),
    (["--dp", "--dp_noise_multiplier", "1", "--dp_accountant", "gdp"], "dp_accountant"),
])
def test_bad_dp_configs_exit_2_with_a_reason(tiny_model: Any, tiny_dataset: Path,
                                             tmp_path: Path, extra: list[str], reason: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from entrypoint.cli import main

    argv = _args(tiny_model, tiny_dataset, tmp_path, "--max_train_steps", "2", *extra)
    assert main(["train", "--quiet", *argv]) == 2
    err = capsys.readouterr().err
    line = err.strip().splitlines()[-1]
    assert line.startswith("error[") and reason in line
    assert str(tmp_path) not in err and str(tiny_dataset) not in err
    assert not (tmp_path / "out" / "last.safetensors").exists()


def test_dp_refusal_is_exit_2_as_a_real_process(tiny_model: Any, tiny_dataset: Path,
                                                tmp_path: Path) -> None:
    argv = _args(tiny_model, tiny_dataset, tmp_path, "--max_train_steps", "2", "--dp",
                 "--dp_noise_multiplier", "1", "--dp_delta", "0.5")
    proc = run_cli("train", "--quiet", *argv)
    assert proc.returncode == 2 and "dp_delta" in proc.stderr
    assert str(tmp_path) not in proc.stderr
