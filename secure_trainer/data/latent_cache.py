"""VAE encoding and the in-memory latent cache (`--cache_latents`).

Each image (and its mirror image when flip_aug is on) is encoded once, under
`torch.inference_mode`, and kept in RAM for the whole run. The posterior sample of every image
is drawn from a generator seeded by (run seed, image index, flip), so a cached latent does not
depend on batch composition and a resumed run rebuilds exactly the same cache.
SECURITY: the cache never touches disk (Kohya's `--cache_latents_to_disk` writes `.npz` files
next to the private images; that flag is refused by config).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from secure_trainer.train.noise import generator_for

VAE_STREAM = 0x5641450  # separates VAE-sample seeds from noise seeds derived from the same run seed


def encode_latents(vae: Any, images: torch.Tensor, scale: float,
                   generators: Sequence[torch.Generator]) -> torch.Tensor:
    """Encode [B,3,H,W] images in [-1,1] to scaled latent samples [B,C,h,w] (float32, CPU-drawn).

    One generator per image draws that image's posterior noise, so results do not depend on
    how images are batched. Runs under inference_mode; the returned tensor is a normal tensor
    (cloned) so it can feed autograd graphs.
    """
    param = next(vae.parameters())
    with torch.inference_mode():
        dist = vae.encode(images.to(device=param.device, dtype=param.dtype)).latent_dist
        mean = dist.mean.float()
        std = dist.std.float()
        eps = torch.stack([torch.randn(tuple(mean.shape[1:]), generator=g, dtype=torch.float32)
                           for g in generators]).to(mean.device)
        latents = (mean + std * eps) * scale
    result: torch.Tensor = latents.clone()
    return result


class LatentCache:
    """Latents keyed by (image index, flipped); lives only in this process's memory."""

    def __init__(self) -> None:
        self._store: dict[tuple[int, bool], torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self._store)

    def __contains__(self, key: object) -> bool:
        return key in self._store

    @property
    def nbytes(self) -> int:
        """Bytes held by cached tensors."""
        return sum(t.numel() * t.element_size() for t in self._store.values())

    def put(self, index: int, flipped: bool, latent: torch.Tensor) -> None:
        """Store one latent [C,h,w]."""
        self._store[(index, flipped)] = latent

    def batch(self, indices: Sequence[int], flipped: Sequence[bool]) -> torch.Tensor | None:
        """Stacked latents for a batch, or None when any of them is missing."""
        try:
            return torch.stack([self._store[(i, f)] for i, f in zip(indices, flipped)])
        except KeyError:
            return None

    def fill(self, keys: Iterable[tuple[int, bool, tuple[int, int]]], *,
             load_image: Callable[[int, bool], torch.Tensor], vae: Any, scale: float, seed: int,
             batch_size: int = 1, on_progress: Callable[[int], None] | None = None) -> None:
        """Encode every (index, flipped, bucket) not cached yet, `batch_size` same-bucket images
        at a time. `load_image(index, flipped)` returns [3,H,W] in [-1,1]. Raises what
        `load_image` raises (the dataset's own typed errors)."""
        pending: dict[tuple[int, int], list[tuple[int, bool]]] = {}
        for index, flip, bucket in keys:
            if (index, flip) not in self._store:
                pending.setdefault(tuple(bucket), []).append((index, flip))  # type: ignore[arg-type]
        done = 0
        for items in pending.values():
            for start in range(0, len(items), max(1, batch_size)):
                chunk = items[start:start + max(1, batch_size)]
                images = torch.stack([load_image(i, f) for i, f in chunk])
                gens = [generator_for(seed, VAE_STREAM, i, int(f)) for i, f in chunk]
                latents = encode_latents(vae, images, scale, gens).to("cpu")
                for (i, f), latent in zip(chunk, latents):
                    self.put(i, f, latent)
                done += len(chunk)
                if on_progress is not None:
                    on_progress(done)
