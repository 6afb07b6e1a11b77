"""Optimizers and schedulers: Kohya names, per-group LR, optional back-ends, warmup fractions."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from secure_trainer.errors import ConfigError
from secure_trainer.settings import OptimizerSettings
from secure_trainer.train.optim import (
    build_optimizer,
    build_scheduler,
    canonical_optimizer_name,
    resolve_groups,
    warmup_steps,
)


def _params(n: int = 2) -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(torch.randn(3, 3)) for _ in range(n)]


def _noop(_msg: str) -> None:
    pass


def test_group_lrs_fall_back_and_zero_groups_are_dropped() -> None:
    unet, te = _params(), _params()
    groups = resolve_groups(unet, te, OptimizerSettings(learning_rate=1e-3, unet_lr=2e-3))
    assert [(g.name, g.lr) for g in groups] == [("unet", 2e-3), ("text_encoder", 1e-3)]
    groups = resolve_groups(unet, te, OptimizerSettings(learning_rate=1e-3, text_encoder_lr=0.0))
    assert [g.name for g in groups] == ["unet"]
    assert all(not p.requires_grad for p in te)
    with pytest.raises(ConfigError):
        resolve_groups(_params(), [], OptimizerSettings(learning_rate=0.0))


def test_sdxl_second_text_encoder_group() -> None:
    unet, te1, te2 = _params(), _params(), _params()
    one = resolve_groups(unet, te1, OptimizerSettings(learning_rate=1e-3, text_encoder_lr=5e-4),
                         te2)
    assert [(g.name, g.lr) for g in one] == [("unet", 1e-3), ("text_encoder", 5e-4),
                                            ("text_encoder_2", 5e-4)]
    two = resolve_groups(unet, te1, OptimizerSettings(learning_rate=1e-3, text_encoder_lr=5e-4,
                                                      text_encoder_lr_2=0.0), te2)
    assert [g.name for g in two] == ["unet", "text_encoder"]
    assert all(not p.requires_grad for p in te2)


@pytest.mark.parametrize("name, cls", [("", torch.optim.AdamW), ("adamw", torch.optim.AdamW),
                                       ("SGDNesterov", torch.optim.SGD)])
def test_torch_optimizers(name: str, cls: type) -> None:
    groups = resolve_groups(_params(), [], OptimizerSettings(learning_rate=1e-3))
    built = build_optimizer(groups, OptimizerSettings(optimizer_type=name,
                                                      optimizer_args=(("weight_decay", 0.1),)), _noop)
    assert isinstance(built.optimizer, cls)
    assert built.optimizer.param_groups[0]["weight_decay"] == 0.1
    if cls is torch.optim.SGD:
        assert built.optimizer.param_groups[0]["nesterov"] is True
        assert built.optimizer.param_groups[0]["momentum"] == 0.9


@pytest.mark.parametrize("name, module", [("AdamW8bit", "bitsandbytes"), ("Lion", "lion_pytorch"),
                                          ("Prodigy", "prodigyopt")])
def test_optional_optimizers_need_their_extra(name: str, module: str) -> None:
    groups = resolve_groups(_params(), [], OptimizerSettings(learning_rate=1e-3))
    if importlib.util.find_spec(module) is None:
        with pytest.raises(ConfigError, match="secure-trainer\\[optim\\]"):
            build_optimizer(groups, OptimizerSettings(optimizer_type=name), _noop)
    else:
        assert build_optimizer(groups, OptimizerSettings(optimizer_type=name), _noop).name == name


def test_unknown_and_dotted_optimizers_are_refused() -> None:
    for name in ("DAdaptAdam", "os.system", "torch.optim.Adam"):
        with pytest.raises(ConfigError):
            canonical_optimizer_name(name)


def test_bad_optimizer_args_are_config_error() -> None:
    groups = resolve_groups(_params(), [], OptimizerSettings(learning_rate=1e-3))
    with pytest.raises(ConfigError, match="AdamW"):
        build_optimizer(groups, OptimizerSettings(optimizer_args=(("no_such_arg", 1),)), _noop)


def test_adafactor_relative_step_uses_its_own_schedule() -> None:
    from transformers.optimization import Adafactor, AdafactorSchedule

    settings = OptimizerSettings(learning_rate=1e-3, optimizer_type="AdaFactor")
    built = build_optimizer(resolve_groups(_params(), [], settings), settings, _noop)
    assert isinstance(built.optimizer, Adafactor)
    assert built.optimizer.defaults["relative_step"] is True
    sched = build_scheduler(built, settings, 10)
    assert isinstance(sched, AdafactorSchedule)


def test_warmup_fraction_and_schedules() -> None:
    assert warmup_steps(0.1, 200) == 20
    assert warmup_steps(15, 200) == 15
    settings = OptimizerSettings(learning_rate=1.0, lr_scheduler="constant_with_warmup",
                                 lr_warmup_steps=0.5)
    built = build_optimizer(resolve_groups(_params(), [], settings), settings, _noop)
    sched = build_scheduler(built, settings, 4)
    lrs = []
    for _ in range(4):
        lrs.append(sched.get_last_lr()[0])
        built.optimizer.step()
        sched.step()
    assert lrs == [0.0, 0.5, 1.0, 1.0]


def test_cosine_decays_and_constant_refuses_warmup() -> None:
    settings = OptimizerSettings(learning_rate=1.0, lr_scheduler="cosine")
    built = build_optimizer(resolve_groups(_params(), [], settings), settings, _noop)
    sched = build_scheduler(built, settings, 10)
    for _ in range(5):
        built.optimizer.step()
        sched.step()
    assert sched.get_last_lr()[0] == pytest.approx(0.5)
    bad = OptimizerSettings(lr_scheduler="constant", lr_warmup_steps=10)
    with pytest.raises(ConfigError, match="constant_with_warmup"):
        build_scheduler(built, bad, 100)
    with pytest.raises(ConfigError):
        build_scheduler(built, OptimizerSettings(lr_scheduler="nope"), 100)
