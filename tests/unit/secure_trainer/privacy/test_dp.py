"""DP-SGD building blocks: Opacus-equal accounting, budget stop, per-sample clipping, records."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from opacus.accountants import PRVAccountant, RDPAccountant
from opacus.accountants.utils import get_noise_multiplier

from secure_trainer.errors import ConfigError
from secure_trainer.kohya.metadata import build_metadata
from secure_trainer.privacy.dp import DPTraining, check_compatible, clip_into, noisy_mean
from secure_trainer.privacy.dp_accounting import (
    default_delta,
    epsilon_after,
    last_step_within,
    make_plan,
    noise_for_target,
)
from secure_trainer.privacy.dp_record import DPRecord
from secure_trainer.privacy.dp_sampler import PoissonSampler, inclusion_rates
from secure_trainer.settings import (
    DatasetSettings,
    DPSettings,
    MetadataMode,
    SubsetSettings,
    TrainSettings,
)


@pytest.mark.parametrize(("name", "cls"), [("rdp", RDPAccountant), ("prv", PRVAccountant)])
def test_epsilon_matches_opacus_stepping(name: str, cls: type) -> None:
    sigma, q, steps, delta = 0.9, 0.05, 120, 1e-5
    reference = cls()
    for _ in range(steps):
        reference.step(noise_multiplier=sigma, sample_rate=q)
    assert epsilon_after(name, sigma, q, steps, delta) == pytest.approx(  # type: ignore[arg-type]
        reference.get_epsilon(delta=delta), rel=1e-6)


@pytest.mark.parametrize("name", ["rdp", "prv"])
def test_noise_for_target_is_opacus_get_noise_multiplier(name: str) -> None:
    ours = noise_for_target(name, 8.0, 1e-4, 0.25, 40)  # type: ignore[arg-type]
    theirs = get_noise_multiplier(target_epsilon=8.0, target_delta=1e-4, sample_rate=0.25,
                                  steps=40, accountant=name)
    assert ours == pytest.approx(theirs)
    assert epsilon_after(name, ours, 0.25, 40, 1e-4) <= 8.0  # type: ignore[arg-type]


def test_budget_ends_at_the_last_step_within_target() -> None:
    settings = DPSettings(enabled=True, target_epsilon=4.0, delta=1e-4)
    plan = make_plan(settings, num_images=50, sample_rate=0.2, steps=60, calibration_steps=10)
    assert 10 <= plan.budget_steps < 60
    k = plan.budget_steps
    assert epsilon_after("rdp", plan.noise_multiplier, 0.2, k, 1e-4) <= 4.0
    assert epsilon_after("rdp", plan.noise_multiplier, 0.2, k + 1, 1e-4) > 4.0
    assert last_step_within("rdp", plan.noise_multiplier, 0.2, 1e-4, 4.0, 5) == 5


def test_plan_with_noise_multiplier_has_no_budget_stop() -> None:
    plan = make_plan(DPSettings(enabled=True, noise_multiplier=1.1), num_images=40,
                     sample_rate=0.1, steps=30)
    assert plan.budget_steps == plan.planned_steps == 30
    assert plan.delta == pytest.approx(default_delta(40)) == pytest.approx(1 / 1600)


@pytest.mark.parametrize("delta", [1 / 40, 0.5])
def test_delta_of_at_least_one_over_n_is_refused(delta: float) -> None:
    with pytest.raises(ConfigError, match="dp_delta"):
        make_plan(DPSettings(enabled=True, noise_multiplier=1.0, delta=delta), num_images=40,
                  sample_rate=0.1, steps=30)


def test_unreachable_target_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="too small"):
        make_plan(DPSettings(enabled=True, target_epsilon=1e-6, delta=1e-5), num_images=400,
                  sample_rate=1.0, steps=5000)


def _per_example_grads(model: torch.nn.Linear, xs: torch.Tensor,
                       ys: torch.Tensor) -> list[list[torch.Tensor]]:
    out = []
    for x, y in zip(xs, ys, strict=True):
        loss = (model(x) - y).pow(2).mean()
        out.append([g.detach() for g in torch.autograd.grad(loss, list(model.parameters()))])
    return out


def test_clipping_is_per_sample_with_one_outlier() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 3)
    params = list(model.parameters())
    xs = torch.randn(5, 6)
    ys = torch.randn(5, 3) * 0.01
    ys[2] = 1e4  # the outlier: its gradient would dominate an unclipped (or batch-clipped) sum
    grads = _per_example_grads(model, xs, ys)
    norms = [math.sqrt(sum(float(g.pow(2).sum()) for g in per)) for per in grads]
    max_norm = 2 * max(n for i, n in enumerate(norms) if i != 2)
    assert norms[2] > 1e3 * max_norm

    total = [torch.zeros_like(p) for p in params]
    seen = []
    for x, y in zip(xs, ys, strict=True):
        (model(x) - y).pow(2).mean().backward()
        seen.append(clip_into(params, total, max_norm))
        assert all(p.grad is None for p in params)
    assert seen == pytest.approx(norms, rel=1e-5)
    # Expected: the outlier scaled to norm C, every other example untouched.
    expected = [sum(g[k] * min(1.0, max_norm / (n + 1e-6)) for g, n in zip(grads, norms, strict=True))
                for k in range(len(params))]
    for got, want in zip(total, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    # The outlier's contribution is at most C; the others' is what they would be unclipped.
    others = [torch.stack([g[k] for i, g in enumerate(grads) if i != 2]).sum(0)
              for k in range(len(params))]
    outlier_part = [t - o for t, o in zip(total, others, strict=True)]
    assert math.sqrt(sum(float(p.pow(2).sum()) for p in outlier_part)) <= max_norm + 1e-4
    unclipped = [torch.stack([g[k] for g in grads]).sum(0) for k in range(len(params))]
    assert math.sqrt(sum(float(u.pow(2).sum()) for u in unclipped)) > 100 * max_norm
    # A batch-level clip would have shrunk the honest examples too: theirs is intact here.
    assert sum(float(o.pow(2).sum()) for o in others) > 0


def test_noisy_mean_has_the_calibrated_std() -> None:
    total = [torch.zeros(200, 100)]
    gen = torch.Generator().manual_seed(3)
    out = noisy_mean(total, noise_std=2.0, expected_batch=4.0, generator=gen)
    assert float(out[0].std()) == pytest.approx(0.5, rel=0.03)


def _train_settings(tmp_path: Path, **kw: object) -> TrainSettings:
    ds = DatasetSettings(subsets=(SubsetSettings(image_dir=tmp_path),), resolution=(64, 64))
    return TrainSettings(pretrained_model_name_or_path=tmp_path, datasets=(ds,),
                         output_dir=tmp_path, dp=DPSettings(enabled=True, noise_multiplier=1.0),
                         **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("kw", "reason"), [
    ({"gradient_accumulation_steps": 2}, "gradient_accumulation_steps 1"),
    ({"mixed_precision": "fp16"}, "mixed_precision"),
    ({"mixed_precision": "bf16", "full_bf16": True}, "full_bf16"),
    ({"resume": Path("state")}, "resume"),
])
def test_incompatible_options_are_refused(tmp_path: Path, kw: dict[str, object],
                                          reason: str) -> None:
    settings = _train_settings(tmp_path, **kw)
    with pytest.raises(ConfigError, match=reason):
        check_compatible(settings)
    with pytest.raises(ConfigError, match=reason):
        DPTraining(settings, warn=lambda _m: None)


def test_bf16_autocast_is_allowed(tmp_path: Path) -> None:
    check_compatible(_train_settings(tmp_path, mixed_precision="bf16"))


def _record() -> DPRecord:
    return DPRecord(epsilon=7.98123, delta=1 / 144, noise_multiplier=0.65, max_grad_norm=1.0,
                    sample_rate=1 / 3, steps=6, accountant="rdp", num_images=12,
                    target_epsilon=8.0, budget_exhausted=False)


def test_redacted_metadata_carries_epsilon_but_no_counts(tmp_path: Path) -> None:
    meta = _record().to_metadata(MetadataMode.REDACTED)
    assert meta["ss_dp_epsilon"] == "7.982"  # rounded up, never down
    assert float(meta["ss_dp_delta"]) == 1e-2 >= 1 / 144  # δ rounded up to a decade
    assert "ss_dp_sampling_rate" not in meta and "ss_dp_num_images" not in meta
    settings = _train_settings(tmp_path)
    out = build_metadata(settings, mode=MetadataMode.REDACTED, training_info={"extra": meta})
    assert out["ss_dp_epsilon"] == "7.982"
    full = _record().to_metadata(MetadataMode.FULL)
    assert float(full["ss_dp_sampling_rate"]) == pytest.approx(1 / 3)
    with pytest.raises(ConfigError):  # the count-revealing keys are private outside FULL
        build_metadata(settings, mode=MetadataMode.REDACTED, training_info={"extra": full})


class _Record:
    def __init__(self, repeats: int, is_reg: bool = False) -> None:
        self.repeats, self.is_reg = repeats, is_reg


class _Dataset:
    """Only what inclusion_rates reads."""

    def __init__(self, repeats: list[int]) -> None:
        self.records = [_Record(r) for r in repeats]


def test_repeats_fold_into_the_inclusion_rate() -> None:
    # 4 images ×10 repeats + 4 ×5, batch 4 ⇒ 15 steps/epoch; each image once per step at most.
    rates = inclusion_rates(_Dataset([10] * 4 + [5] * 4), steps_per_epoch=15)
    assert rates[:4] == [pytest.approx(10 / 15)] * 4 and rates[4:] == [pytest.approx(5 / 15)] * 4
    assert sum(rates) == pytest.approx(4.0)  # expected logical batch = train_batch_size
    assert inclusion_rates(_Dataset([30]), steps_per_epoch=15) == [1.0]


def test_poisson_sampler_draws_each_image_independently(tiny_dataset: Path) -> None:
    import random

    from secure_trainer.data.dataset import KohyaDataset

    subsets = tuple(SubsetSettings(image_dir=tiny_dataset / d, caption_extension=".txt")
                    for d in ("10_subject", "5_style"))
    ds = KohyaDataset((DatasetSettings(subsets=subsets, resolution=(64, 64), batch_size=4),),
                      seed=1, prior_loss_weight=1.0)
    steps = ds.batches_per_epoch()
    rates = inclusion_rates(ds, steps)
    sampler = PoissonSampler(ds, rates, steps, rng=random.Random(5))
    counts = [0] * len(rates)
    sizes = []
    for epoch in range(1, 41):
        for batch in sampler(epoch):
            idx = [e.indices[0] for e in batch.examples]
            assert len(idx) == len(set(idx))  # never duplicated within a step
            sizes.append(len(idx))
            for i in idx:
                counts[i] += 1
    # Expected uses per epoch = repeats (10 or 5), within sampling error over 40 epochs.
    for i, record in enumerate(ds.records):
        assert counts[i] / 40 == pytest.approx(record.repeats, rel=0.25)
    assert len(set(sizes)) > 1  # Poisson: variable batch size


def test_record_round_trips_next_to_the_lora(tmp_path: Path) -> None:
    from secure_trainer.errors import DataRejected
    from secure_trainer.privacy.dp_record import (
        epsilon_from_metadata,
        read_record,
        record_path,
        write_record,
    )

    lora = tmp_path / "demo-lora.safetensors"
    assert read_record(lora) is None  # a run without DP
    written = write_record(lora, _record())
    assert written == record_path(lora) == tmp_path / "demo-lora.dp.json"
    assert read_record(lora) == _record()
    written.write_text('{"schema": "other"}', encoding="utf-8")
    with pytest.raises(DataRejected):
        read_record(lora)
    assert epsilon_from_metadata(_record().to_metadata(MetadataMode.NONE)) == 7.982
    assert epsilon_from_metadata({"ss_network_dim": "8"}) is None
