"""`secure-trainer run --dp`: the DP guarantee reaches the run manifest and the app audit log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from safetensors import safe_open

from entrypoint.audit.applog import verify
from entrypoint.secret import Secret
from entrypoint.vault.devserver import DevVault
from tests.integration.run_support import RunProcess, app_events, prepare

pytestmark = [pytest.mark.integration, pytest.mark.root, pytest.mark.slow]


def test_dp_run_records_epsilon_in_manifest_and_audit_log(dev_vault: DevVault, tmp_path: Path,
                                                          tiny_model: Any,
                                                          tiny_dataset: Path) -> None:
    case = prepare(dev_vault, tmp_path, tiny_model, tiny_dataset)
    run = RunProcess(case, steps=3, extra_env={"ST_AUDIT_MODE": "app"},
                     extra_args=("--dp", "--dp_noise_multiplier", "1.0",
                                 "--dp_max_grad_norm", "1.0", "--train_batch_size", "2"))
    code, out = run.finish(timeout=600)
    assert code == 0, out[-3000:]
    with case.opened() as ws:
        (lora,) = ws.runs_dir.glob("*/lora.safetensors")
        manifest = json.loads((lora.parent / "manifest.json").read_text())
        with safe_open(str(lora), "pt") as fh:
            meta = fh.metadata()
        dp = manifest["dp"]
        assert dp["epsilon"] > 0 and dp["noise_multiplier"] == 1.0 and dp["steps"] == 3
        assert dp["max_grad_norm"] == 1.0 and 0 < dp["sample_rate"] <= 1
        assert float(meta["ss_dp_epsilon"]) >= dp["epsilon"]
        (event,) = [e for e in app_events(ws) if e["event"] == "dp"]
        assert event["fields"]["epsilon"] == dp["epsilon"]
        assert event["fields"]["sample_rate"] == dp["sample_rate"]
        assert "dp: ε=" in out
        assert verify(ws.audit_dir / "app.jsonl", Secret(case.audit_key_hex())).ok
