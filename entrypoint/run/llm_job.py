"""`run --trainer llm`: the train-llm job's arguments, config and inputs, as the lifecycle needs
them (the policy judges the config; the child reads the exact config the policy judged).

`LlmJob.parse(args)` splits `CONFIG.yaml [--key value ...] [--log-level L] [--quiet]
[--progress-every N]` and reads the YAML (relative to the caller's cwd) once, in the supervisor.
`config(run_out)` builds the validated `LlmTrainConfig` (relative paths resolve against the cwd,
which the lifecycle sets to the workspace) with `output_dir` set to the run's `out/` unless the
user gave one (then the policy judges it and `refusals` refuses it, as `run` does for Kohya's
`--output_dir`). `child_yaml` is the merged mapping the child re-parses: the trainer never reads
a file outside the workspace.
Must never: put a config value (paths) into an error message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from entrypoint.errors import ConfigError

if TYPE_CHECKING:
    from secure_trainer.llm.config import LlmTrainConfig
    from secure_trainer.settings import DPSettings

__all__ = ["CONFIG_NAME", "LlmJob", "dp_settings", "refusals"]

CONFIG_NAME = "train-llm.yaml"
"""The merged config the child reads, in `runs/<id>/` (root's, group-readable)."""
# train-llm's own (kebab-case) options: True when they take a value.
_OWN_FLAGS = {"--log-level": True, "--quiet": False, "--progress-every": True}


@dataclass(frozen=True)
class LlmJob:
    """One train-llm job of `run`: the merged raw config and our own flags."""

    raw: dict[str, object]
    """YAML overridden by the `--key value` flags (LLaMA-Factory names), as given."""
    log_level: str | None
    """`--log-level` when given (the policy judges it), else None (ST_LOG_LEVEL applies)."""
    child_flags: tuple[str, ...]
    """`--quiet` / `--progress-every N`, passed through to the child."""

    @classmethod
    def parse(cls, args: Sequence[str]) -> LlmJob:
        """Split and read the arguments. Raises ConfigError (unreadable YAML, unknown key)."""
        from secure_trainer.llm.config import load_yaml, parse_flags

        rest = list(args)
        config_file = Path(rest.pop(0)) if rest and not rest[0].startswith("--") else None
        flags: list[str] = []
        own: list[str] = []
        log_level: str | None = None
        i = 0
        while i < len(rest):
            name, eq, value = rest[i].partition("=")
            if name not in _OWN_FLAGS:
                flags.append(rest[i])
                i += 1
                continue
            if _OWN_FLAGS[name] and not eq:
                if i + 1 >= len(rest):
                    raise ConfigError(f"option '{name}' needs a value")
                value, i = rest[i + 1], i + 1
            i += 1
            if name == "--log-level":
                log_level = value.lower()
            else:
                own += [name, value] if _OWN_FLAGS[name] else [name]
        raw: dict[str, object] = load_yaml(config_file) if config_file is not None else {}
        raw.update(parse_flags(flags))
        return cls(raw=raw, log_level=log_level, child_flags=tuple(own))

    @property
    def user_output(self) -> bool:
        """Whether the user named an output_dir (`run` picks it; refused after the policy)."""
        return "output_dir" in self.raw

    def config(self, run_out: str) -> LlmTrainConfig:
        """The validated config; `run_out` is the output_dir when the user gave none."""
        from secure_trainer.llm.config import build_config

        return build_config(self._merged(run_out))

    def child_yaml(self, run_out: str) -> bytes:
        """The merged config for the child (ignored keys dropped, output_dir = `run_out`)."""
        import yaml

        from secure_trainer.llm.config import IGNORED_KEYS

        merged = {k: v for k, v in self._merged(run_out).items() if k not in IGNORED_KEYS}
        merged["output_dir"] = run_out
        return str(yaml.safe_dump(merged, sort_keys=True)).encode("utf-8")

    def child_args(self, config_rel: str, log_level: str) -> list[str]:
        """The child's arguments after `train-llm`."""
        return [config_rel, "--log-level", log_level.upper(), *self.child_flags]

    def _merged(self, run_out: str) -> dict[str, object]:
        return {**self.raw} if self.user_output else {**self.raw, "output_dir": run_out}


def refusals(config: LlmTrainConfig, *, user_output: bool) -> None:
    """What `run` does not do for train-llm (yet). Raises ConfigError (exit 2)."""
    if user_output:
        raise ConfigError("`run` writes the adapter into runs/<run-id>/out of the workspace; "
                          "drop output_dir")
    if config.save_steps > 0 or config.resume_from_checkpoint is not None:
        raise ConfigError("save_steps and resume_from_checkpoint are not supported inside "
                          "`run` yet (checkpoints are not collected or sealed)")


def dp_settings(config: LlmTrainConfig) -> DPSettings:
    """The run's DP settings in the form root's DP check (`dp_check.py`) compares against."""
    from secure_trainer.settings import DPSettings

    return DPSettings(enabled=config.dp, target_epsilon=config.target_epsilon,
                      delta=config.delta, max_grad_norm=config.max_grad_norm,
                      noise_multiplier=config.noise_multiplier, accountant=config.accountant)
