"""The DP figures of a trained LoRA: `ss_dp_*` metadata keys and the `<lora>.dp.json` record.

What goes where: the LoRA metadata always carries the guarantee (ε, δ, σ, C, steps,
accountant, privacy unit). The sampling rate q and the image count N are counts of the
private data (q = expected batch / N), so they appear in the metadata only with
`--metadata full`; in the other modes δ is rounded *up* to a power of ten (an (ε, δ)
guarantee also holds for every larger δ) because the default δ = 1/N² would reveal N.
The JSON record next to the LoRA is for the run manifest / audit log inside the workspace and
carries everything. Never holds a path or caption.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from secure_trainer.errors import DataRejected
from secure_trainer.settings import MetadataMode

RECORD_SUFFIX = ".dp.json"
SCHEMA = "secure-trainer/dp/1"
# coupling: lora_metadata.PRIVATE_KEYS lists the two count-revealing keys.
PRIVATE_DP_KEYS = ("ss_dp_sampling_rate", "ss_dp_num_images")


@dataclass(frozen=True)
class DPRecord:
    """What DP-SGD guaranteed for one saved LoRA (at the step it was saved)."""

    epsilon: float
    delta: float
    noise_multiplier: float
    max_grad_norm: float
    sample_rate: float
    steps: int
    accountant: str
    num_images: int
    target_epsilon: float | None
    budget_exhausted: bool
    """True when training stopped early because the next step would exceed the target ε."""
    privacy_unit: str = "image"
    sampling: str = "poisson"
    schema: str = SCHEMA

    def to_metadata(self, mode: MetadataMode) -> dict[str, str]:
        """`ss_dp_*` strings for the LoRA file in `mode` (see the module docstring)."""
        full = mode is MetadataMode.FULL
        out = {
            "ss_dp": "True",
            "ss_dp_epsilon": _up(self.epsilon),
            "ss_dp_delta": repr(self.delta) if full else _decade_up(self.delta),
            "ss_dp_noise_multiplier": f"{self.noise_multiplier:.6g}",
            "ss_dp_max_grad_norm": f"{self.max_grad_norm:g}",
            "ss_dp_steps": str(self.steps),
            "ss_dp_accountant": self.accountant,
            "ss_dp_privacy_unit": self.privacy_unit,
            "ss_dp_sampling": self.sampling,
            "ss_dp_target_epsilon": "None" if self.target_epsilon is None
            else f"{self.target_epsilon:g}",
        }
        if full:
            out["ss_dp_sampling_rate"] = repr(self.sample_rate)
            out["ss_dp_num_images"] = str(self.num_images)
        return out

    def to_json(self) -> str:
        """The full record as JSON (for `<lora>.dp.json` inside the workspace)."""
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"


def _up(value: float) -> str:
    """`value` rounded up at 4 significant digits: a published ε must never understate."""
    if value <= 0 or not math.isfinite(value):
        return repr(value)
    scale = 10 ** (3 - math.floor(math.log10(value)))
    return f"{math.ceil(value * scale) / scale:.4g}"


def _decade_up(value: float) -> str:
    """The smallest power of ten ≥ value, e.g. 2.7e-5 → "1e-04"."""
    return f"{10.0 ** math.ceil(math.log10(value) - 1e-12):.0e}"


def record_path(lora_path: Path) -> Path:
    """`<dir>/<name>.dp.json` for `<dir>/<name>.safetensors`."""
    return lora_path.with_name(lora_path.stem + RECORD_SUFFIX)


def write_record(lora_path: Path, record: DPRecord) -> Path:
    """Write the JSON record next to the LoRA (atomic rename); return its path.

    Raises OSError when the folder is not writable (the caller translates it).
    """
    target = record_path(lora_path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(record.to_json(), encoding="utf-8")
    tmp.replace(target)
    return target


def read_record(lora_path: Path) -> DPRecord | None:
    """The DP record written next to `lora_path`, or None for a run without DP.

    Raises DataRejected when the record exists but is not a valid DP record.
    """
    path = record_path(lora_path)
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if raw.get("schema") != SCHEMA:
            raise ValueError
        return DPRecord(**raw)
    except (OSError, ValueError, TypeError):
        raise DataRejected("the DP record next to the LoRA is not valid") from None


def epsilon_from_metadata(metadata: dict[str, str]) -> float | None:
    """ε recorded in a LoRA's metadata, or None when it was trained without DP."""
    if metadata.get("ss_dp") != "True":
        return None
    try:
        return float(metadata["ss_dp_epsilon"])
    except (KeyError, ValueError):
        raise DataRejected("the LoRA's DP metadata is incomplete") from None
