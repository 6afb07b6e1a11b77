"""State directories: safetensors + JSON round trip, RNG restore, refusal of foreign dirs."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers.optimization import get_scheduler

from secure_trainer.errors import ConfigError, DataRejected
from secure_trainer.train.state import Position, apply_state, read_state, restore_rng, save_state


def _setup() -> tuple[torch.nn.Linear, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = get_scheduler("cosine", opt, num_warmup_steps=1, num_training_steps=10)
    return model, opt, sched


def _step(model: torch.nn.Linear, opt: torch.optim.Optimizer, sched: object) -> None:
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    sched.step()  # type: ignore[attr-defined]
    opt.zero_grad()


def test_round_trip_continues_identically(tmp_path: Path) -> None:
    model, opt, sched = _setup()
    for _ in range(3):
        _step(model, opt, sched)
    params = dict(model.named_parameters())
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    save_state(tmp_path / "s", lora_params=params, optimizer=opt, scheduler=sched,
               position=Position(global_step=3, next_epoch=2, skip_batches=1, seed=9))
    assert {p.suffix for p in (tmp_path / "s").iterdir()} == {".safetensors", ".json"}
    snapshot = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    expected_draws = (random.random(), float(np.random.rand()), torch.rand(1).item())
    random.setstate(snapshot[0])
    np.random.set_state(snapshot[1])
    torch.set_rng_state(snapshot[2])
    _step(model, opt, sched)
    expected = {k: v.detach().clone() for k, v in model.named_parameters()}

    model2, opt2, sched2 = _setup()
    loaded = read_state(tmp_path / "s")
    pos = apply_state(loaded, lora_params=dict(model2.named_parameters()), optimizer=opt2,
                      scheduler=sched2)
    assert pos == Position(3, 2, 1, 9)
    restore_rng(loaded)
    assert (random.random(), float(np.random.rand()), torch.rand(1).item()) == expected_draws
    restore_rng(loaded)
    _step(model2, opt2, sched2)
    assert all(torch.equal(expected[k], v) for k, v in model2.named_parameters())
    assert sched2.get_last_lr() == sched.get_last_lr()


def test_foreign_or_broken_directories_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        read_state(tmp_path)
    model, opt, sched = _setup()
    save_state(tmp_path / "s", lora_params=dict(model.named_parameters()), optimizer=opt,
               scheduler=sched, position=Position(0, 1, 0, 1))
    (tmp_path / "s" / "optimizer.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(DataRejected):
        read_state(tmp_path / "s")


def test_mismatched_network_is_config_error(tmp_path: Path) -> None:
    model, opt, sched = _setup()
    save_state(tmp_path / "s", lora_params=dict(model.named_parameters()), optimizer=opt,
               scheduler=sched, position=Position(0, 1, 0, 1))
    other = torch.nn.Linear(4, 5)
    other_opt = torch.optim.AdamW(other.parameters())
    with pytest.raises(ConfigError):
        apply_state(read_state(tmp_path / "s"), lora_params=dict(other.named_parameters()),
                    optimizer=other_opt, scheduler=get_scheduler("constant", other_opt))
