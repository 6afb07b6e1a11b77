"""Training state directories for `--save_state` / `--resume`: safetensors + JSON, never pickle.

A state directory holds everything a run needs to continue bit-identically on the same
hardware: every LoRA parameter, the optimizer state (tensors in safetensors, scalars and
param-group settings in JSON), the LR scheduler's counters, the python/numpy/torch RNG states
and the position in training (next epoch, batches already done in it, global step, seed).
SECURITY: resuming never unpickles anything, so a hostile state directory cannot run code;
error messages never echo the directory path.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from secure_trainer.errors import ConfigError, DataRejected, TrainingError

STATE_FORMAT = "secure-trainer-state/1"
STATE_JSON = "train_state.json"
LORA_FILE = "lora_params.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng.safetensors"


@dataclass(frozen=True)
class Position:
    """Where training stands: `next_epoch` (1-based) starts after skipping `skip_batches`."""

    global_step: int
    next_epoch: int
    skip_batches: int
    seed: int


def state_dir_name(output_name: str, *, epoch: int | None = None, step: int | None = None) -> str:
    """Kohya's names: `<name>-<epoch:06d>-state`, `<name>-step<step:08d>-state`, `<name>-state`."""
    if epoch is not None:
        return f"{output_name}-{epoch:06d}-state"
    if step is not None:
        return f"{output_name}-step{step:08d}-state"
    return f"{output_name}-state"


def _jsonable(value: Any, what: str) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, what) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v, what) for k, v in value.items()}
    raise TrainingError(f"cannot save {what}: value of type {type(value).__name__} "
                        "is neither a tensor nor JSON")


def _split_optimizer(opt_state: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, per_param in opt_state["state"].items():
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value.detach().to("cpu").contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = _jsonable(value, "optimizer state")
    meta = {"param_groups": _jsonable(opt_state["param_groups"], "optimizer groups"),
            "scalars": scalars}
    return tensors, meta


def _join_optimizer(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, tensor in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = tensor
    for index, values in meta["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    return {"state": state, "param_groups": [dict(g) for g in meta["param_groups"]]}


def _rng_snapshot() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)  # type: ignore[misc]
    tensors = {"torch": torch.get_rng_state(),
               "numpy_keys": torch.from_numpy(np.asarray(np_keys, dtype=np.uint32).view(np.int32).copy())}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    meta = {"python": [py_version, list(py_state), py_gauss],
            "numpy": [np_name, int(np_pos), int(np_has_gauss), float(np_gauss)]}
    return tensors, meta


def _rng_restore(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
    version, state, gauss = meta["python"]
    random.setstate((version, tuple(state), gauss))
    name, pos, has_gauss, cached = meta["numpy"]
    keys = tensors["numpy_keys"].numpy().view(np.uint32)
    np.random.set_state((name, keys, pos, has_gauss, cached))
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda."))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def save_state(directory: Path, *, lora_params: Mapping[str, torch.Tensor],
               optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
               position: Position) -> Path:
    """Write a state directory atomically (temp dir beside it, then rename); return its path.

    An existing directory of the same name is replaced. Raises TrainingError if some optimizer
    or scheduler value can be stored neither as a tensor nor as JSON, or on an OS error.
    """
    directory = Path(directory)
    opt_tensors, opt_meta = _split_optimizer(optimizer.state_dict())
    sched = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
    rng_tensors, rng_meta = _rng_snapshot()
    doc = {
        "format": STATE_FORMAT,
        "global_step": position.global_step,
        "next_epoch": position.next_epoch,
        "skip_batches": position.skip_batches,
        "seed": position.seed,
        "optimizer": opt_meta,
        "scheduler": _jsonable(sched, "scheduler state"),
        "rng": rng_meta,
        "lora_shapes": {k: list(v.shape) for k, v in lora_params.items()},
    }
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".state-", dir=directory.parent))
        try:
            save_file({k: v.detach().to("cpu").contiguous() for k, v in lora_params.items()},
                      str(tmp / LORA_FILE))
            save_file(opt_tensors, str(tmp / OPTIMIZER_FILE))
            save_file(rng_tensors, str(tmp / RNG_FILE))
            (tmp / STATE_JSON).write_text(json.dumps(doc, indent=1), encoding="utf-8")
            for child in tmp.iterdir():
                with open(child, "rb") as fh:
                    os.fsync(fh.fileno())
            if directory.exists():
                shutil.rmtree(directory)
            os.replace(tmp, directory)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    except OSError:
        raise TrainingError("could not write the training state directory "
                            "(check free space and permissions of output_dir)") from None
    return directory


@dataclass(frozen=True)
class LoadedState:
    """A state directory read into memory, not yet applied."""

    position: Position
    lora_params: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng_tensors: dict[str, torch.Tensor]
    rng_meta: dict[str, Any]


def read_state(directory: Path) -> LoadedState:
    """Read and validate a state directory written by `save_state`.

    Raises ConfigError when the directory is missing or not one of ours, DataRejected when a
    file in it is malformed. Never unpickles.
    """
    directory = Path(directory)
    if not (directory / STATE_JSON).is_file():
        raise ConfigError("--resume must name a state directory written with --save_state")
    try:
        doc = json.loads((directory / STATE_JSON).read_text(encoding="utf-8"))
        if doc.get("format") != STATE_FORMAT:
            raise ConfigError("--resume directory has an unknown state format")
        position = Position(global_step=int(doc["global_step"]), next_epoch=int(doc["next_epoch"]),
                            skip_batches=int(doc["skip_batches"]), seed=int(doc["seed"]))
        return LoadedState(
            position=position,
            lora_params=load_file(str(directory / LORA_FILE)),
            optimizer=_join_optimizer(load_file(str(directory / OPTIMIZER_FILE)), doc["optimizer"]),
            scheduler=dict(doc["scheduler"]),
            rng_tensors=load_file(str(directory / RNG_FILE)),
            rng_meta=dict(doc["rng"]),
        )
    except (OSError, ValueError, KeyError, TypeError, SafetensorError):
        raise DataRejected("the --resume state directory is incomplete or malformed") from None


def apply_state(loaded: LoadedState, *, lora_params: Mapping[str, torch.nn.Parameter],
                optimizer: torch.optim.Optimizer,
                scheduler: torch.optim.lr_scheduler.LRScheduler) -> Position:
    """Copy LoRA weights, optimizer and scheduler state in place; return the position.

    Does NOT restore RNG state (call `restore_rng` last, after anything else that draws).
    Raises ConfigError when the saved network does not match this one (other dim, targets,
    optimizer or parameter groups).
    """
    if set(loaded.lora_params) != set(lora_params) or any(
            tuple(loaded.lora_params[k].shape) != tuple(p.shape) for k, p in lora_params.items()):
        raise ConfigError("the --resume state does not match this network "
                          "(network_dim, conv_dim or trained parts changed)")
    with torch.no_grad():
        for name, param in lora_params.items():
            param.copy_(loaded.lora_params[name].to(param.device, param.dtype))
    saved = dict(loaded.optimizer)
    if len(saved["param_groups"]) != len(optimizer.param_groups):
        raise ConfigError("the --resume state does not match this optimizer's parameter groups "
                          "(unet_lr/text_encoder_lr or trained parts changed)")
    # JSON turned tuples (betas) into lists; give them back the type the optimizer built.
    saved["param_groups"] = [
        {k: tuple(v) if isinstance(cur.get(k), tuple) and isinstance(v, list) else v
         for k, v in group.items()}
        for group, cur in zip(saved["param_groups"], optimizer.param_groups)]
    try:
        optimizer.load_state_dict(saved)
        scheduler.load_state_dict({**scheduler.state_dict(), **loaded.scheduler})
    except (ValueError, KeyError, RuntimeError):
        raise ConfigError("the --resume state does not match this optimizer or its "
                          "parameter groups (optimizer_type or learning rates changed)") from None
    return loaded.position


def restore_rng(loaded: LoadedState) -> None:
    """Restore the python, numpy and torch (and CUDA) RNG states saved with the state."""
    try:
        _rng_restore(loaded.rng_tensors, loaded.rng_meta)
    except (ValueError, KeyError, TypeError, RuntimeError):
        raise DataRejected("the --resume state has malformed RNG state") from None
