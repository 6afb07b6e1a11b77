"""Membership-inference audit of a LoRA: the calibrated loss-threshold attack.

For every image, the denoising loss is measured at a fixed grid of timesteps with fixed,
seeded noises, once with the base model and once with the LoRA applied; the score is
base loss − LoRA loss (how much the LoRA "knows" this very image beyond the base model,
which calibrates away per-image difficulty). Members score higher when the LoRA memorised
them; AUC / TPR at low FPR over members vs holdout measure it. Images and captions are read
with the trainer's own dataset, caption and text-encoding code (no caption transforms), so
the attack sees what training saw; SDXL LoRAs are conditioned as in training (both encoders,
the pooled vector and each image's size/crop micro-conditioning). SECURITY: the report and the plot carry numbers only —
never a path, file name or caption; errors are our typed ones with one-line messages.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from secure_trainer.errors import ConfigError, DataRejected
from secure_trainer.privacy.mia_metrics import AttackMetrics, attack_metrics
from secure_trainer.settings import DatasetSettings, NetworkSettings
from secure_trainer.train.noise import generator_for

SCHEMA = "secure-trainer/mia/1"
MIN_IMAGES = 5
NOISE_STREAM = 0x3A1A


@dataclass(frozen=True)
class MiaSettings:
    """One audit run."""

    lora: Path
    base: Path
    members: Path
    holdout: Path
    resolution: int | None = None
    """Square side in px; None ⇒ the LoRA's `ss_resolution` (else 512)."""
    caption_extension: str = ".caption"
    timesteps: int = 10
    """Timesteps on an even grid over (0, 1000)."""
    noises: int = 4
    """Seeded noise draws per timestep (the same for every image and both models)."""
    seed: int = 0
    bootstrap: int = 1000

    def __post_init__(self) -> None:
        if self.timesteps < 1 or self.noises < 1:
            raise ConfigError("--timesteps and --noises must be at least 1")
        if self.bootstrap < 100:
            raise ConfigError("--bootstrap must be at least 100")
        if self.resolution is not None and (self.resolution < 64 or self.resolution % 8):
            raise ConfigError("--resolution must be a multiple of 8, at least 64")


@dataclass(frozen=True)
class MiaReport:
    """The audit's result (numbers only)."""

    members: int
    holdout: int
    metrics: AttackMetrics
    member_score_mean: float
    holdout_score_mean: float
    timesteps: tuple[int, ...]
    noises: int
    resolution: int
    seed: int
    dp_epsilon: float | None
    schema: str = SCHEMA
    attack: str = "loss-threshold, score = base loss - LoRA loss (per-image calibrated)"

    def to_json(self) -> str:
        """The report as JSON (ROC points included)."""
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    def summary(self) -> str:
        """One line for the terminal: AUC with CI and TPR@1%FPR; no names, no captions."""
        a, t = self.metrics.auc, self.metrics.tpr_at_1pct_fpr
        dp = "" if self.dp_epsilon is None else f", LoRA trained with DP epsilon {self.dp_epsilon:g}"
        return (f"mia: AUC {a.value:.3f} (95% CI {a.low:.3f}-{a.high:.3f}), TPR@1%FPR "
                f"{t.value:.3f} (95% CI {t.low:.3f}-{t.high:.3f}); {self.members} members vs "
                f"{self.holdout} holdout{dp}")


def timestep_grid(count: int) -> tuple[int, ...]:
    """`count` integer timesteps at the centres of equal strata of [0, 1000)."""
    return tuple(int((k + 0.5) * 1000 / count) for k in range(count))


def _network_from(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> NetworkSettings:
    """The LoRA's architecture from its tensors (ranks) and metadata (alpha, conv args)."""
    downs = {k: v for k, v in tensors.items() if k.endswith(".lora_down.weight")}
    has_te = any(k.startswith("lora_te") for k in downs)
    has_unet = any(k.startswith("lora_unet") for k in downs)
    linear = [v for v in downs.values() if v.ndim == 2 or v.shape[-1] == 1]
    dim = int(meta.get("ss_network_dim") or (linear[0].shape[0] if linear else 4))
    try:
        alpha = float(meta.get("ss_network_alpha") or dim)
        args = json.loads(meta.get("ss_network_args") or "{}")
        conv_dim = int(args["conv_dim"]) if "conv_dim" in args else None
        conv_alpha = float(args["conv_alpha"]) if "conv_alpha" in args else None
    except (ValueError, TypeError, KeyError):
        raise DataRejected("the LoRA's network metadata is not readable") from None
    return NetworkSettings(dim=dim, alpha=alpha, conv_dim=conv_dim, conv_alpha=conv_alpha,
                           train_unet_only=not has_te, train_text_encoder_only=not has_unet)


def _resolution(settings: MiaSettings, meta: dict[str, str]) -> int:
    if settings.resolution is not None:
        return settings.resolution
    raw = meta.get("ss_resolution", "")
    digits = [int(p) for p in raw.strip("()[] ").split(",") if p.strip().isdigit()]
    return digits[0] if digits else 512


def load_images(folder: Path, *, resolution: int, caption_extension: str) -> Any:
    """The images of a Kohya-layout folder (`<n>_<name>` subfolders, or images directly),
    read by the trainer's dataset with captions untransformed, one record per image.

    Raises DataRejected for a missing folder or fewer than MIN_IMAGES images.
    """
    from secure_trainer.data.dataset import KohyaDataset
    from secure_trainer.data.image_io import list_images
    from secure_trainer.kohya.dataset_config import datasets_from_folders
    from secure_trainer.settings import SubsetSettings

    if not folder.is_dir():
        raise DataRejected("members/holdout folder not found")
    cli = {"train_data_dir": str(folder), "resolution": str(resolution),
           "caption_extension": caption_extension, "train_batch_size": 1}
    datasets = datasets_from_folders(cli, warn=lambda _m: None)
    subsets = tuple(SubsetSettings(image_dir=s.image_dir, class_tokens=s.class_tokens,
                                   caption_extension=s.caption_extension)
                    for s in datasets[0].subsets)
    if not subsets and list_images(folder):
        subsets = (SubsetSettings(image_dir=folder, caption_extension=caption_extension),)
    if sum(len(list_images(s.image_dir)) for s in subsets) < MIN_IMAGES:
        raise DataRejected(f"members and holdout need at least {MIN_IMAGES} images each")
    ds = DatasetSettings(subsets=subsets, resolution=(resolution, resolution), batch_size=1)
    return KohyaDataset((ds,), seed=0, prior_loss_weight=1.0, caption_transform_enabled=False)


class LossProbe:
    """Base model + injected LoRA; per-image denoising losses with the LoRA off or on."""

    def __init__(self, settings: MiaSettings) -> None:
        """Load the base (safetensors / diffusers only) and the LoRA (validated safetensors).

        Raises DataRejected for a pickle or malformed file, or a LoRA that does not fit.
        """
        from secure_trainer.kohya.export import load_kohya_into, read_lora
        from secure_trainer.models.loading import load_base_model
        from secure_trainer.models.lora import inject_lora

        if settings.lora.suffix != ".safetensors" or not settings.lora.is_file():
            raise DataRejected("the LoRA must be an existing .safetensors file")
        tensors, self.metadata = read_lora(settings.lora)
        self.base = load_base_model(settings.base)
        self.handles = inject_lora(self.base, _network_from(tensors, self.metadata))
        load_kohya_into(self.handles, settings.lora, strict=True)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        for module in (self.base.unet, self.base.text_encoder, self.base.text_encoder_2,
                       self.base.vae):
            if module is not None:  # text_encoder_2: SDXL only
                module.to(self.device).eval()
        self.settings = settings
        self.timesteps = timestep_grid(settings.timesteps)

    def _condition(self, dataset: Any, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        """(encoder states [1, 77, d], UNet extra kwargs) for one image's caption with the LoRA
        multiplier as currently set: SD1.x one encoder; SDXL both encoders, the pooled vector
        and the size/crop micro-conditioning, exactly as training builds them (step.py)."""
        from secure_trainer.models.sdxl_text import encode_pair, tokenize_pair
        from secure_trainer.models.text_encoding import encode, tokenize

        base, caption = self.base, [dataset.raw_caption(index)]
        if base.text_encoder_2 is None:
            ids = tokenize(base.tokenizer, caption, None)
            return encode(base.text_encoder, ids, None, self.device), {}
        ids, ids_2 = tokenize_pair(base.tokenizer, base.tokenizer_2, caption)
        hidden, pooled = encode_pair(base.text_encoder, base.text_encoder_2, ids, ids_2,
                                     int(base.tokenizer_2.eos_token_id), self.device)
        time_ids = dataset.size_conditioning([index], [False]).to(self.device)
        return hidden, {"text_embeds": pooled, "time_ids": time_ids}

    def losses(self, dataset: Any) -> list[tuple[float, float]]:
        """(base loss, LoRA loss) per image, each the mean over the timestep × noise grid."""
        s, base, dev = self.settings, self.base, self.device
        t = torch.tensor([ts for ts in self.timesteps for _ in range(s.noises)], dtype=torch.int64)
        out = []
        with torch.inference_mode():
            for record in dataset.records:
                image = dataset.load_image(record.index).unsqueeze(0).to(dev)
                # The posterior mean: the latent every sampled training latent is centred on.
                latent = base.vae.encode(image).latent_dist.mean.float().cpu() \
                    * base.vae_scale_factor
                # The same noises for every image of a shape, and for both models.
                gen = generator_for(s.seed, NOISE_STREAM, *latent.shape[1:])
                noise = torch.randn((len(t), *latent.shape[1:]), generator=gen)
                noisy = base.noise_scheduler.add_noise(latent.expand_as(noise), noise, t)
                pair = []
                for multiplier in (0.0, 1.0):
                    self.handles.set_multiplier(multiplier)
                    hidden, extra = self._condition(dataset, record.index)
                    added = {k: v.expand(len(t), *v.shape[1:]) for k, v in extra.items()}
                    pred = base.unet(noisy.to(dev), t.to(dev), encoder_hidden_states=hidden.expand(
                        len(t), *hidden.shape[1:]), added_cond_kwargs=added or None).sample
                    pair.append(float(torch.nn.functional.mse_loss(pred.float().cpu(), noise)))
                out.append((pair[0], pair[1]))
        self.handles.set_multiplier(1.0)
        return out


def run_audit(settings: MiaSettings) -> MiaReport:
    """Score members and holdout, compute the metrics. Raises DataRejected / ConfigError."""
    from secure_trainer.privacy.dp_record import epsilon_from_metadata

    probe = LossProbe(settings)
    resolution = _resolution(settings, probe.metadata)
    sets = [load_images(folder, resolution=resolution,
                        caption_extension=settings.caption_extension)
            for folder in (settings.members, settings.holdout)]
    scores = [[b - lo for b, lo in probe.losses(ds)] for ds in sets]
    if not all(math.isfinite(v) for side in scores for v in side):
        raise DataRejected("the model produced non-finite losses on these images")
    metrics = attack_metrics(scores[0], scores[1], rounds=settings.bootstrap, seed=settings.seed)
    return MiaReport(members=len(scores[0]), holdout=len(scores[1]), metrics=metrics,
                     member_score_mean=sum(scores[0]) / len(scores[0]),
                     holdout_score_mean=sum(scores[1]) / len(scores[1]),
                     timesteps=probe.timesteps, noises=settings.noises, resolution=resolution,
                     seed=settings.seed, dp_epsilon=epsilon_from_metadata(probe.metadata))


def write_report(report: MiaReport, out_dir: Path, stem: str) -> tuple[Path, Path]:
    """Write `<stem>.mia.json` and `<stem>.mia-roc.png` into `out_dir` (created if needed).

    Raises ConfigError when the folder cannot be written.
    """
    from secure_trainer.privacy.mia_plot import draw_roc

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        json_path = out_dir / f"{stem}.mia.json"
        json_path.write_text(report.to_json(), encoding="utf-8")
        a = report.metrics.auc
        png = draw_roc(report.metrics.roc, out_dir / f"{stem}.mia-roc.png",
                       title=f"membership inference ROC, AUC {a.value:.3f} "
                             f"[{a.low:.3f}, {a.high:.3f}]")
    except OSError:
        raise ConfigError("could not write the audit report (is --out writable?)") from None
    return json_path, png
