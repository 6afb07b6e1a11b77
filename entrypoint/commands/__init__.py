"""Command modules of the CLI; each exposes `register(root, groups)`.

coupling: add a new module here and nowhere else (explicit registry, no import magic).
"""

from __future__ import annotations

from types import ModuleType

from entrypoint.commands import (
    audit_cmd,
    canary_cmd,
    data_cmd,
    data_text_cmd,
    dev_dataset_cmd,
    dev_llm_cmd,
    dev_model_cmd,
    dev_vault_cmd,
    keys_cmd,
    mia_cmd,
    policy_cmd,
    registry_cmd,
    run_cmd,
    train_cmd,
    train_llm_cmd,
    wipe_cmd,
    workspace_cmd,
)

COMMAND_MODULES: tuple[ModuleType, ...] = (
    train_cmd,
    train_llm_cmd,
    run_cmd,
    policy_cmd,
    keys_cmd,
    workspace_cmd,
    wipe_cmd,
    data_cmd,
    data_text_cmd,
    registry_cmd,
    audit_cmd,
    canary_cmd,
    mia_cmd,
    dev_model_cmd,
    dev_dataset_cmd,
    dev_llm_cmd,
    dev_vault_cmd,
)
