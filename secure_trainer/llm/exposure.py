"""Canary exposure and greedy extraction (Carlini et al., "The Secret Sharer", 2019).

Exposure of a canary s among the candidate space R (here 10^6 digit strings) is
log2|R| − log2 rank(s), the rank by the model's loss on the secret. The rank is estimated
from `n` candidates drawn uniformly from R: rank ≈ |R| · (1 + #{candidates scoring lower})
/ (n + 1), so exposure ≈ −log2((1 + lower) / (n + 1)) and at most log2(n + 1) is measurable.
A candidate's score is the summed negative log-likelihood of the assistant turn, which differs
between candidates only in the secret (the prompt and the answer's lead-in are shared).
Extraction: greedy decoding from the lead-in yields exactly the secret's tokens.
Pure measurement: never prints or returns a secret.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from secure_trainer.llm.batches import collate, per_example_loss
from secure_trainer.llm.canary import DIGITS, Canary, random_secret, spoken, turns_for
from secure_trainer.llm.template import IGNORE_INDEX, Encoded, encode, render

SCORE_BATCH = 64


@dataclass(frozen=True)
class CanaryExposure:
    """What one model reveals about one canary."""

    repetitions: int
    exposure: float
    """Bits; at most `max_exposure`."""
    extracted: bool
    """Greedy decoding from the lead-in produced the secret exactly."""


def candidate_space_bits() -> float:
    """log2 |R| for DIGITS decimal digits."""
    return DIGITS * math.log2(10)


def nll_sums(model: Any, examples: Sequence[Encoded], pad_id: int) -> list[float]:
    """Summed NLL over each example's labelled tokens (batched, no gradients)."""
    out: list[float] = []
    with torch.no_grad():
        for start in range(0, len(examples), SCORE_BATCH):
            chunk = examples[start:start + SCORE_BATCH]
            batch = collate(chunk, pad_id)
            counts = (batch.labels[:, 1:] != IGNORE_INDEX).sum(dim=1)
            out.extend((per_example_loss(model, batch) * counts).tolist())
    return out


def exposure_from_rank(lower: float, candidates: int) -> float:
    """−log2((1 + lower) / (candidates + 1)): `lower` = candidates scoring below the canary
    (ties count one half)."""
    return math.log2(candidates + 1) - math.log2(1.0 + lower)


def canary_exposure(model: Any, tokenizer: Any, canary: Canary, template: str,
                    candidates: int, rng: random.Random) -> float:
    """The canary's exposure among `candidates` random other secrets."""
    others: list[str] = []
    while len(others) < candidates:
        secret = random_secret(rng)
        if secret != canary.secret:
            others.append(secret)
    encoded = [encode(tokenizer, turns_for(canary, s), template, 1 << 16)
               for s in [canary.secret, *others]]
    scores = nll_sums(model, encoded, int(tokenizer.pad_token_id))
    mine, rest = scores[0], scores[1:]
    lower = sum(1.0 for s in rest if s < mine) + 0.5 * sum(1.0 for s in rest if s == mine)
    return exposure_from_rank(lower, candidates)


def greedy_extracts(model: Any, tokenizer: Any, canary: Canary, template: str) -> bool:
    """True when greedy decoding after the lead-in reproduces the secret's tokens exactly."""
    text, _ = render(tokenizer, turns_for(canary, canary.secret), template)
    secret_text = spoken(canary.secret)
    cut = text.rindex(secret_text)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    starts = [start for start, _ in enc["offset_mapping"]]
    prefix = [i for i, s in zip(ids, starts, strict=True) if s < cut]
    target = [i for i, s in zip(ids, starts, strict=True)
              if cut <= s < cut + len(secret_text)]
    device = next(model.parameters()).device
    with torch.no_grad():
        generated = model.generate(input_ids=torch.tensor([prefix], device=device),
                                   attention_mask=torch.ones(1, len(prefix), dtype=torch.long,
                                                             device=device),
                                   max_new_tokens=len(target), do_sample=False,
                                   pad_token_id=int(tokenizer.pad_token_id))
    return bool(generated[0, len(prefix):].tolist() == target)


def measure(model: Any, tokenizer: Any, canaries: Sequence[Canary], template: str, *,
            candidates: int, seed: int) -> list[CanaryExposure]:
    """Exposure and extraction for every canary (candidates drawn from a seeded RNG, so a base
    model and its adapter are compared on the same candidates)."""
    model.eval()
    out = []
    for index, canary in enumerate(canaries):
        rng = random.Random(f"canary-candidates/{seed}/{index}")
        out.append(CanaryExposure(
            repetitions=canary.repetitions,
            exposure=canary_exposure(model, tokenizer, canary, template, candidates, rng),
            extracted=greedy_extracts(model, tokenizer, canary, template)))
    return out
