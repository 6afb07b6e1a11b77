"""Padding, batching and the masked causal-LM loss of tokenized examples.

The loss is computed here rather than by the model so that per-example (and per-unit) losses
are available to DP-SGD: each example's loss is the mean over its own labelled tokens. Never
sees text; holds token ids only.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from secure_trainer.llm.template import IGNORE_INDEX, Encoded


@dataclass(frozen=True)
class Batch:
    """Right-padded tensors of one (micro-)batch."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor

    def to(self, device: torch.device) -> Batch:
        """The same batch on `device`."""
        return Batch(input_ids=self.input_ids.to(device),
                     attention_mask=self.attention_mask.to(device), labels=self.labels.to(device))


def collate(examples: Sequence[Encoded], pad_id: int) -> Batch:
    """Pad to the longest example: ids with `pad_id`, mask 0 and labels -100 on padding."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        ids[row, :n] = torch.tensor(example.input_ids, dtype=torch.long)
        mask[row, :n] = 1
        labels[row, :n] = torch.tensor(example.labels, dtype=torch.long)
    return Batch(input_ids=ids, attention_mask=mask, labels=labels)


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def per_example_loss(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Shape (batch,): each example's mean next-token cross-entropy over its labelled tokens."""
    batch = batch.to(_device(model))
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    shifted = logits[:, :-1, :].float()
    targets = batch.labels[:, 1:]
    token_loss = torch.nn.functional.cross_entropy(
        shifted.reshape(-1, shifted.shape[-1]), targets.reshape(-1),
        ignore_index=IGNORE_INDEX, reduction="none").view(targets.shape)
    counts = (targets != IGNORE_INDEX).sum(dim=1).clamp(min=1)
    return token_loss.sum(dim=1) / counts


def token_mean_loss(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """The mean over every labelled token of the batch (what Hugging Face's loss computes)."""
    batch = batch.to(_device(model))
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    shifted = logits[:, :-1, :].float()
    return torch.nn.functional.cross_entropy(
        shifted.reshape(-1, shifted.shape[-1]), batch.labels[:, 1:].reshape(-1),
        ignore_index=IGNORE_INDEX)


def epoch_batches(count: int, batch_size: int, seed: int, epoch: int) -> Iterator[list[int]]:
    """Shuffled index batches of one epoch (seeded by run seed and epoch; last may be short)."""
    order = list(range(count))
    random.Random(f"llm-shuffle/{seed}/{epoch}").shuffle(order)
    for start in range(0, count, batch_size):
        yield order[start:start + batch_size]
