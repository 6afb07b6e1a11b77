"""User-level DP-SGD: the per-unit clipped, noise-free gradient sum equals a reference built
one record at a time with the model's own loss; units group by subject; noisy steps and ε."""

from __future__ import annotations

import contextlib
import random
from typing import Any

import pytest
import torch

from secure_trainer.errors import DataRejected
from secure_trainer.llm.dp import UnitDPSGD, unit_gradient_into
from secure_trainer.llm.template import IGNORE_INDEX, Encoded
from secure_trainer.llm.units import group_units, poisson_sample, sample_rate
from secure_trainer.privacy.dp_accounting import DPPlan

PAD = 0


def _lora_model() -> Any:
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    base = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64,
                                        num_hidden_layers=1, num_attention_heads=4,
                                        num_key_value_heads=2, pad_token_id=PAD))
    model = get_peft_model(base, LoraConfig(r=2, lora_alpha=4, target_modules="all-linear"))
    with torch.no_grad():  # B starts at zero; make every LoRA gradient non-trivial
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0.0, 0.3)
    return model


def _examples() -> list[Encoded]:
    rng = random.Random(1)
    out = []
    for length in (5, 9, 7, 6, 11, 8):
        ids = tuple(rng.randrange(1, 50) for _ in range(length))
        prompt = length // 2  # first half prompt (-100), second half response
        out.append(Encoded(ids, (IGNORE_INDEX,) * prompt + ids[prompt:]))
    return out


def _reference(model: Any, params: list[torch.nn.Parameter], examples: list[Encoded],
               units: list[list[int]], max_norm: float) -> list[torch.Tensor]:
    """One record per backward pass with the model's own HF loss; sum per unit; clip; sum."""
    total = [torch.zeros_like(p) for p in params]
    for unit in units:
        unit_grad = [torch.zeros_like(p) for p in params]
        for index in unit:
            ex = examples[index]
            model.zero_grad(set_to_none=True)
            out = model(input_ids=torch.tensor([ex.input_ids]),
                        labels=torch.tensor([ex.labels]))
            out.loss.backward()
            for acc, p in zip(unit_grad, params, strict=True):
                acc += p.grad
        norm = torch.sqrt(sum((g ** 2).sum() for g in unit_grad))
        factor = min(1.0, max_norm / (float(norm) + 1e-6))
        for acc, g in zip(total, unit_grad, strict=True):
            acc += g * factor
    model.zero_grad(set_to_none=True)
    return total


@pytest.mark.parametrize("chunk", [8, 2])
def test_unit_clipping_matches_micro_batched_reference(chunk: int) -> None:
    model = _lora_model()
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    examples = _examples()
    units = [[0, 1, 2], [3], [4, 5]]
    # Norm bound between the units' norms, so some units are clipped and some are not.
    max_norm = 2.5  # unit norms here are about 3.0, 2.3 and 1.1
    expected = _reference(model, params, examples, units, max_norm)
    total = [torch.zeros_like(p) for p in params]
    for unit in units:
        unit_gradient_into(model, params, [examples[i] for i in unit], PAD, total, max_norm,
                           contextlib.nullcontext, chunk=chunk)
    for got, want in zip(total, expected, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert all(p.grad is None for p in params)
    # the bound is active: the reference without clipping differs
    unclipped = _reference(model, params, examples, units, 1e9)
    assert any((a - b).abs().max() > 1e-4 for a, b in zip(unclipped, expected, strict=True))


def test_unit_contribution_is_bounded() -> None:
    model = _lora_model()
    params = [p for p in model.parameters() if p.requires_grad]
    examples = _examples()
    total = [torch.zeros_like(p) for p in params]
    unit_gradient_into(model, params, examples, PAD, total, 0.25, contextlib.nullcontext)
    assert float(torch.sqrt(sum((t ** 2).sum() for t in total))) <= 0.25 + 1e-5


def test_units_group_by_subject() -> None:
    assert group_units(["a", "b", "a", "c", "b"], "subject") == [[0, 2], [1, 4], [3]]
    assert group_units(["a", "a"], "record") == [[0], [1]]
    with pytest.raises(DataRejected, match="subject id"):
        group_units(["a", None], "subject")
    assert sample_rate(4, 10) == 0.4 and sample_rate(20, 10) == 1.0
    drawn = [len(poisson_sample(1000, 0.1, random.Random(s))) for s in range(5)]
    assert all(60 < d < 140 for d in drawn)


def test_noisy_step_and_epsilon() -> None:
    model = _lora_model()
    params = [p for p in model.parameters() if p.requires_grad]
    plan = DPPlan(noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=1.0, delta=1e-5,
                  accountant="rdp", planned_steps=3, budget_steps=2, num_images=3)
    dp = UnitDPSGD(plan, [[0, 1], [2, 3], [4, 5]], unit_name="subject",
                   rng=random.Random(0))
    dp.step_gradient(model, params, _examples(), PAD, contextlib.nullcontext)
    first = [p.grad.clone() for p in params]
    dp.step_gradient(model, params, _examples(), PAD, contextlib.nullcontext)
    # same data, same (full) sample, fresh noise: the gradients differ
    assert any((a - p.grad).abs().max() > 1e-3 for a, p in zip(first, params, strict=True))
    assert dp.exhausted() and dp.steps == 2
    record = dp.record()
    assert record.privacy_unit == "subject" and record.budget_exhausted
    assert 0 < record.epsilon == dp.epsilon()
