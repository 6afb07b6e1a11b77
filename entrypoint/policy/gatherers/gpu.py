"""GPU facts: NVIDIA device nodes, driver version, whether torch sees CUDA.

Never initialises a CUDA context (is_available only) and imports torch only when a device
node exists, since CUDA cannot work without one.
"""

from __future__ import annotations

import re
from pathlib import Path

from entrypoint.policy.context import PolicyContext
from entrypoint.policy.facts import GpuFacts

__all__ = ["gather"]

_DEVICE_RE = re.compile(r"^nvidia\d+$")
_DRIVER_RE = re.compile(r"Kernel Module(?: for \S+)?\s+(\d+(?:\.\d+)+)")


def _driver_version() -> str | None:
    for path, pattern in ((Path("/sys/module/nvidia/version"), None),
                          (Path("/proc/driver/nvidia/version"), _DRIVER_RE)):
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if pattern is None:
            return text.strip() or None
        match = pattern.search(text)
        if match:
            return match.group(1)
    return None


def _torch_cuda() -> bool:
    import torch  # lazy: ~seconds to import, needed only when a device node exists

    return bool(torch.cuda.is_available())


def gather(ctx: PolicyContext, dev: Path = Path("/dev")) -> GpuFacts:
    """Facts about the GPUs visible to this process."""
    del ctx
    devices = sum(1 for p in dev.iterdir() if _DEVICE_RE.match(p.name)) if dev.is_dir() else 0
    wsl = (dev / "dxg").exists()  # WSL2 exposes CUDA through /dev/dxg, not /dev/nvidiaN
    return GpuFacts(
        devices=devices,
        driver_version=_driver_version(),
        torch_cuda=_torch_cuda() if devices or wsl else False,
    )
