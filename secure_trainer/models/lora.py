"""Inject LoRA adapters (peft) into exactly the modules sd-scripts `networks.lora` targets (SD1.x, SDXL).

UNet: every Linear and 1×1 Conv2d inside a Transformer2DModel ("LoRA-LierLa"); with `conv_dim`
also the convs and time projections inside ResnetBlock2D / Downsample2D / Upsample2D
("LoRA-C3Lier", 3×3 convs at conv_dim/conv_alpha). Text encoder: every Linear inside CLIPAttention
and CLIPMLP (SDXL: both encoders, `lora_te1_`/`lora_te2_`; UNet keys in LDM block names, as
sd-scripts builds SDXL on an LDM-layout UNet). Scale = alpha / rank (alpha 0 or unset ⇒ rank); lora_down (peft lora_A) is
Kaiming-uniform(a=√5), lora_up (lora_B) zero, so ΔW = 0 at step 0. Base weights are frozen.
Never touches disk; names every module by its Kohya key so export and loading agree.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from secure_trainer.errors import ConfigError, TrainingError
from secure_trainer.models.ldm_names import ModuleNamer, unet_module_namer
from secure_trainer.settings import NetworkSettings

ADAPTER = "default"
Kind = Literal["linear", "conv1x1", "conv3x3"]
Part = Literal["unet", "text_encoder", "text_encoder_2"]
# Class names, as sd-scripts matches them (by name, not isinstance).
UNET_BLOCKS = frozenset({"Transformer2DModel"})
UNET_CONV_BLOCKS = frozenset({"ResnetBlock2D", "Downsample2D", "Upsample2D"})
TE_BLOCKS = frozenset({"CLIPAttention", "CLIPSdpaAttention", "CLIPFlashAttention2", "CLIPMLP"})
_LINEAR = frozenset({"Linear", "LoRACompatibleLinear"})
_CONV = frozenset({"Conv2d", "LoRACompatibleConv"})
PREFIX: dict[Part, str] = {"unet": "lora_unet_", "text_encoder": "lora_te_"}
SDXL_PREFIX: dict[Part, str] = {"unet": "lora_unet_", "text_encoder": "lora_te1_",
                                "text_encoder_2": "lora_te2_"}


@dataclass(frozen=True)
class LoraTarget:
    """One module that gets an adapter."""

    kohya_name: str
    """e.g. `lora_unet_down_blocks_0_attentions_0_proj_in` (no `.lora_down.weight` suffix)."""
    path: str
    """Module path inside its root model (UNet or text encoder)."""
    part: Part
    kind: Kind
    rank: int
    alpha: float


def _resolve_alpha(alpha: float | None, rank: int) -> float:
    return float(rank) if alpha is None or alpha == 0 else float(alpha)


def _te_name_prefix(text_encoder: nn.Module) -> str:
    # transformers >= 5.6 flattens CLIPTextModel (no `.text_model`); Kohya names keep the level.
    return "" if hasattr(text_encoder, "text_model") else "text_model_"


def find_targets(root: nn.Module, part: Part, net: NetworkSettings, *,
                 prefix: str | None = None, namer: ModuleNamer | None = None) -> list[LoraTarget]:
    """The adapter targets of one model part, in module order, with per-module rank/alpha.

    `prefix` overrides the SD1 key prefix (SDXL: `lora_te1_`/`lora_te2_`); `namer` maps a module
    path to the name used in the Kohya key (SDXL UNet: LDM block names). Raises ConfigError.
    """
    if net.dim < 1:
        raise ConfigError("network_dim must be a positive integer")
    alpha = _resolve_alpha(net.alpha, net.dim)
    conv_dim = net.conv_dim or None
    conv_alpha = (_resolve_alpha(net.conv_alpha if net.conv_alpha is not None else 1.0, conv_dim)
                  if conv_dim else 0.0)
    is_te = part != "unet"
    blocks = set(TE_BLOCKS if is_te else UNET_BLOCKS)
    if part == "unet" and conv_dim:
        blocks |= UNET_CONV_BLOCKS
    name_prefix = (prefix or PREFIX[part]) + (_te_name_prefix(root) if is_te else "")
    seen: set[str] = set()
    targets: list[LoraTarget] = []
    for block_path, block in root.named_modules():
        if type(block).__name__ not in blocks:
            continue
        for child_path, child in block.named_modules():
            cls = type(child).__name__
            if cls not in _LINEAR and cls not in _CONV:
                continue
            path = f"{block_path}.{child_path}" if block_path else child_path
            if path in seen:
                continue
            if cls in _LINEAR:
                kind: Kind = "linear"
            else:
                assert isinstance(child, nn.Conv2d)
                kind = "conv1x1" if tuple(child.kernel_size) == (1, 1) else "conv3x3"
            if kind == "conv3x3" and not conv_dim:
                continue
            seen.add(path)
            rank, a = (conv_dim, conv_alpha) if kind == "conv3x3" else (net.dim, alpha)
            assert rank is not None
            key_path = namer(path) if namer is not None else path
            targets.append(LoraTarget(kohya_name=name_prefix + key_path.replace(".", "_"), path=path,
                                      part=part, kind=kind, rank=rank, alpha=a))
    return targets


@dataclass
class LoraHandles:
    """The injected adapters, addressed by Kohya module name."""

    unet: Any
    text_encoder: Any
    modules: dict[str, tuple[nn.Module, Kind]]
    """kohya_name -> (peft LoraLayer, kind); insertion order = module order."""
    targets: dict[str, LoraTarget]
    multiplier: float = 1.0
    adapter: str = ADAPTER
    text_encoder_2: Any = None
    """SDXL's OpenCLIP-bigG encoder (None for SD1.x)."""

    def named_params(self, part: Part) -> Iterator[tuple[str, nn.Parameter]]:
        """(`<kohya_name>.lora_down.weight` | `.lora_up.weight`, Parameter) of one part."""
        for name, (layer, _kind) in self.modules.items():
            if self.targets[name].part != part:
                continue
            yield f"{name}.lora_down.weight", layer.lora_A[self.adapter].weight
            yield f"{name}.lora_up.weight", layer.lora_B[self.adapter].weight

    def unet_params(self) -> list[nn.Parameter]:
        """Trainable LoRA parameters of the UNet (empty with network_train_text_encoder_only)."""
        return [p for _, p in self.named_params("unet")]

    def text_encoder_params(self, which: Literal["all", "text_encoder", "text_encoder_2"] = "all"
                            ) -> list[nn.Parameter]:
        """Trainable LoRA parameters of the text encoder(s) (empty with network_train_unet_only).

        `all` = both SDXL encoders (TE1 then TE2); otherwise one part.
        """
        parts: tuple[Part, ...] = (("text_encoder", "text_encoder_2") if which == "all"
                                   else (which,))
        return [p for part in parts for _, p in self.named_params(part)]

    def alpha(self, name: str) -> float:
        """Current alpha of one module (as it will be exported)."""
        return float(self.modules[name][0].lora_alpha[self.adapter])

    def rank(self, name: str) -> int:
        """Rank of one module."""
        return int(self.modules[name][0].r[self.adapter])

    def set_alpha(self, name: str, alpha: float) -> None:
        """Change one module's alpha (used when loading weights); keeps the multiplier."""
        layer = self.modules[name][0]
        layer.lora_alpha[self.adapter] = float(alpha)
        layer.set_scale(self.adapter, self.multiplier)

    def set_multiplier(self, multiplier: float) -> None:
        """Kohya's network multiplier: forward adds multiplier · alpha/r · up(down(x))."""
        self.multiplier = float(multiplier)
        for layer, _kind in self.modules.values():
            layer.set_scale(self.adapter, self.multiplier)


def _inject(root: nn.Module, targets: list[LoraTarget], net: NetworkSettings,
            param_dtype: torch.dtype) -> dict[str, tuple[nn.Module, Kind]]:
    from peft import LoraConfig, inject_adapter_in_model
    from peft.tuners.lora import LoraLayer

    if not targets:
        return {}
    base = targets[0]
    # Per-module rank/alpha that differ from the default (3×3 convs with conv_dim) go into
    # peft's patterns; keys are escaped full paths, so each matches exactly one module.
    odd = [t for t in targets if (t.rank, t.alpha) != (net.dim, base.alpha) or t.kind == "conv3x3"]
    config = LoraConfig(
        r=net.dim, lora_alpha=_resolve_alpha(net.alpha, net.dim),
        target_modules=[t.path for t in targets],
        rank_pattern={re.escape(t.path): t.rank for t in odd},
        alpha_pattern={re.escape(t.path): t.alpha for t in odd},
        lora_dropout=float(net.dropout or 0.0), bias="none", init_lora_weights=True)
    root.requires_grad_(False)
    inject_adapter_in_model(config, root, adapter_name=ADAPTER)
    out: dict[str, tuple[nn.Module, Kind]] = {}
    for t in targets:
        layer = root.get_submodule(t.path)
        if not isinstance(layer, LoraLayer) or layer.r.get(ADAPTER) != t.rank:
            raise TrainingError("LoRA injection did not wrap the expected modules")
        for sub in (layer.lora_A[ADAPTER], layer.lora_B[ADAPTER]):
            sub.to(dtype=param_dtype)
            sub.requires_grad_(True)
        out[t.kohya_name] = (layer, t.kind)
    return out


def inject_lora(base: Any, net: NetworkSettings, *,
                param_dtype: torch.dtype = torch.float32) -> LoraHandles:
    """Add LoRA adapters to `base.unet` / `base.text_encoder` the way sd-scripts networks.lora does.

    `base` is a model_loading.BaseModel (anything with `.unet` and `.text_encoder`; a non-None
    `.text_encoder_2` makes it SDXL). LoRA weights
    are kept in `param_dtype` (float32, like Kohya without --full_fp16) whatever the base dtype.
    All base parameters are frozen (requires_grad False). Raises ConfigError for dim < 1 or when
    both network_train_unet_only and network_train_text_encoder_only are set.
    """
    if net.train_unet_only and net.train_text_encoder_only:
        raise ConfigError(
            "network_train_unet_only and network_train_text_encoder_only exclude each other")
    text_encoder_2 = getattr(base, "text_encoder_2", None)
    sdxl = text_encoder_2 is not None
    for frozen in (base.unet, base.text_encoder, text_encoder_2, getattr(base, "vae", None)):
        if frozen is not None:
            frozen.requires_grad_(False)
    modules: dict[str, tuple[nn.Module, Kind]] = {}
    targets: dict[str, LoraTarget] = {}
    parts: list[tuple[Part, nn.Module]] = []
    if not net.train_text_encoder_only:
        parts.append(("unet", base.unet))
    if not net.train_unet_only:
        parts.append(("text_encoder", base.text_encoder))
        if text_encoder_2 is not None:
            parts.append(("text_encoder_2", text_encoder_2))
    prefixes = SDXL_PREFIX if sdxl else PREFIX
    for part, root in parts:
        # SDXL UNet keys use LDM block names (sd-scripts' SDXL UNet is LDM-layout).
        config: Any = getattr(root, "config", {})
        namer = unet_module_namer(dict(config)) if sdxl and part == "unet" else None
        found = find_targets(root, part, net, prefix=prefixes[part], namer=namer)
        modules.update(_inject(root, found, net, param_dtype))
        targets.update({t.kohya_name: t for t in found})
    return LoraHandles(unet=base.unet, text_encoder=base.text_encoder, modules=modules,
                       targets=targets, text_encoder_2=text_encoder_2)
