"""Optimizers and LR schedulers for the LoRA parameters, with Kohya's names and defaults.

Supported `optimizer_type` (case-insensitive): AdamW (torch, also ""), AdamW8bit (bitsandbytes),
Lion (lion-pytorch), Prodigy (prodigyopt), SGDNesterov (torch SGD, momentum 0.9 unless given),
AdaFactor (transformers, relative_step on by default ⇒ Adafactor's own schedule). Optional
back-ends are imported only when asked for; a missing one is a ConfigError naming the extra.
Never imports a class named by the user as a dotted path: a config file must not choose code.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from secure_trainer.errors import ConfigError
from secure_trainer.settings import OptimizerSettings

DIFFUSERS_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
                        "constant_with_warmup")
SUPPORTED_OPTIMIZERS = ("AdamW", "AdamW8bit", "Lion", "Prodigy", "SGDNesterov", "AdaFactor")
_EXTRA_HINT = "install it with: pip install 'secure-trainer[optim]'"


@dataclass(frozen=True)
class ParamGroupSpec:
    """One optimizer group before it is built: its name, parameters and resolved LR."""

    name: str
    params: tuple[torch.nn.Parameter, ...]
    lr: float


def resolve_groups(unet_params: Sequence[torch.nn.Parameter],
                   text_encoder_params: Sequence[torch.nn.Parameter],
                   settings: OptimizerSettings,
                   text_encoder_2_params: Sequence[torch.nn.Parameter] = ()) -> list[ParamGroupSpec]:
    """Per-group LR like Kohya: unet_lr / text_encoder_lr, each falling back to learning_rate.

    SDXL's second encoder is its own group `text_encoder_2` at the second `--text_encoder_lr`
    value, else at the first one (sd-scripts' rule for one value).

    A group whose LR resolves to 0 is left out and its parameters get `requires_grad=False`
    (nothing computes or stores their gradients). Raises ConfigError when no group is left
    or a learning rate is negative.
    """
    groups: list[ParamGroupSpec] = []
    for name, params, lr in (
        ("unet", unet_params, settings.unet_lr),
        ("text_encoder", text_encoder_params, settings.text_encoder_lr),
        ("text_encoder_2", text_encoder_2_params,
         settings.text_encoder_lr if settings.text_encoder_lr_2 is None
         else settings.text_encoder_lr_2),
    ):
        if not params:
            continue
        resolved = settings.learning_rate if lr is None else lr
        if resolved < 0:
            raise ConfigError(f"{'unet_lr' if name == 'unet' else 'text_encoder_lr'} must be >= 0")
        if resolved == 0:
            for p in params:
                p.requires_grad_(False)
            continue
        groups.append(ParamGroupSpec(name=name, params=tuple(params), lr=float(resolved)))
    if not groups:
        raise ConfigError("nothing to train: every parameter group has learning rate 0 "
                          "(check learning_rate, unet_lr, text_encoder_lr)")
    return groups


def _optional_class(module: str, attr: str, optimizer_name: str, package: str) -> Any:
    try:
        mod = importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"optimizer_type {optimizer_name} needs the '{package}' package; "
                          f"{_EXTRA_HINT}") from None
    return getattr(mod, attr)


def _fused_ok(groups: Sequence[ParamGroupSpec]) -> bool:
    params = [p for g in groups for p in g.params]
    return bool(params) and all(
        p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)


def canonical_optimizer_name(optimizer_type: str) -> str:
    """Map a user spelling to one of SUPPORTED_OPTIMIZERS; raise ConfigError otherwise."""
    key = optimizer_type.strip().lower()
    if key in ("", "adamw"):
        return "AdamW"
    for name in SUPPORTED_OPTIMIZERS:
        if key == name.lower():
            return name
    raise ConfigError(f"optimizer_type '{optimizer_type}' is not supported; use one of "
                      f"{', '.join(SUPPORTED_OPTIMIZERS)} (dotted class paths are refused)")


@dataclass
class BuiltOptimizer:
    """The optimizer plus what the scheduler builder needs to know about it."""

    optimizer: torch.optim.Optimizer
    name: str
    adafactor_initial_lr: float | None = None  # set when Adafactor runs its own relative-step LR


def build_optimizer(groups: Sequence[ParamGroupSpec], settings: OptimizerSettings,
                    warn: Callable[[str], None]) -> BuiltOptimizer:
    """Build the optimizer for `groups`, passing `optimizer_args` as keyword arguments.

    Raises ConfigError for an unknown type, a missing optional package, or arguments the
    optimizer rejects (the key names come from the user's config, so they are safe to echo).
    """
    name = canonical_optimizer_name(settings.optimizer_type)
    kwargs: dict[str, Any] = dict(settings.optimizer_args)
    param_groups: list[dict[str, Any]] = [
        {"params": list(g.params), "lr": g.lr, "name": g.name} for g in groups]
    lr = groups[0].lr
    cls: Any
    adafactor_initial_lr: float | None = None
    if name == "AdamW":
        cls = torch.optim.AdamW
        if "foreach" not in kwargs and _fused_ok(groups):
            # One fused kernel per parameter instead of ~6 small ops: on CPU the unfused loop
            # over hundreds of tiny LoRA tensors costs more than the model's forward pass.
            kwargs.setdefault("fused", True)
    elif name == "SGDNesterov":
        cls = torch.optim.SGD
        kwargs.setdefault("momentum", 0.9)
        kwargs["nesterov"] = True
    elif name == "AdamW8bit":
        cls = _optional_class("bitsandbytes.optim", "AdamW8bit", name, "bitsandbytes")
    elif name == "Lion":
        cls = _optional_class("lion_pytorch", "Lion", name, "lion-pytorch")
    elif name == "Prodigy":
        cls = _optional_class("prodigyopt", "Prodigy", name, "prodigyopt")
    else:  # AdaFactor
        from transformers.optimization import Adafactor

        cls = Adafactor
        kwargs.setdefault("relative_step", True)  # Kohya's default
        if kwargs["relative_step"]:
            # Adafactor computes its own step size; the given LR only seeds AdafactorSchedule.
            if len({g.lr for g in groups}) > 1:
                warn("AdaFactor with relative_step ignores unet_lr/text_encoder_lr")
            for group in param_groups:
                group.pop("lr")
            adafactor_initial_lr = lr
            lr = None  # type: ignore[assignment]
        elif kwargs.get("warmup_init"):
            warn("AdaFactor warmup_init needs relative_step; ignoring warmup_init")
            kwargs["warmup_init"] = False
    try:
        optimizer = cls(param_groups, lr=lr, **kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"optimizer_args rejected by {name}: {type(err).__name__}") from None
    return BuiltOptimizer(optimizer=optimizer, name=name, adafactor_initial_lr=adafactor_initial_lr)


def warmup_steps(value: float, max_train_steps: int) -> int:
    """Kohya's lr_warmup_steps: an int count, or a float in (0, 1) meaning a fraction of steps."""
    if value < 0:
        raise ConfigError("lr_warmup_steps must be >= 0")
    if 0 < value < 1:
        return int(value * max_train_steps)
    return int(value)


def build_scheduler(built: BuiltOptimizer, settings: OptimizerSettings,
                    max_train_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """LR scheduler by Kohya name (diffusers' get_scheduler, or `adafactor[:lr]`).

    The schedule spans `max_train_steps` optimizer steps (stepped once per optimizer step on
    every process). Raises ConfigError for an unknown name, `constant` with warmup (Kohya
    refuses it too), or `adafactor` with another optimizer.
    """
    name = settings.lr_scheduler.strip().lower()
    warmup = warmup_steps(settings.lr_warmup_steps, max_train_steps)
    if built.adafactor_initial_lr is not None or name.startswith("adafactor"):
        if built.name != "AdaFactor":
            raise ConfigError("lr_scheduler adafactor requires optimizer_type AdaFactor")
        from transformers.optimization import AdafactorSchedule

        initial = built.adafactor_initial_lr
        if ":" in name:
            try:
                initial = float(name.split(":", 1)[1])
            except ValueError:
                raise ConfigError("lr_scheduler adafactor:<initial_lr> needs a number") from None
        return AdafactorSchedule(built.optimizer, initial_lr=initial or 0.0)
    if name not in DIFFUSERS_SCHEDULERS:
        raise ConfigError(f"lr_scheduler '{settings.lr_scheduler}' is not supported; use one of "
                          f"{', '.join(DIFFUSERS_SCHEDULERS)}, adafactor")
    if name == "constant" and warmup > 0:
        raise ConfigError("lr_scheduler constant takes no warmup; use constant_with_warmup "
                          "or set lr_warmup_steps to 0")
    from diffusers.optimization import get_scheduler

    return get_scheduler(name, built.optimizer, num_warmup_steps=warmup,
                         num_training_steps=max_train_steps,
                         num_cycles=settings.lr_scheduler_num_cycles,
                         power=settings.lr_scheduler_power)


def current_lrs(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """LR of each named group right now (for logging), e.g. {"unet": 1e-4}."""
    out: dict[str, float] = {}
    for i, group in enumerate(optimizer.param_groups):
        lr = group.get("lr")
        out[str(group.get("name", i))] = float(lr) if lr is not None else 0.0
    return out
