"""A full `run`: no caption or image byte outside the cipher dir, no secret in /proc or the log.

During [train] every process's /proc/<pid>/cmdline and environ is read and searched for the
workspace passphrase, the run's Vault token (learnt from a test-only raw audit log), the AppRole
secret_id and role_id and the dev server's root token (which only the server's own environ may
hold). The leak probe snapshots /tmp, /var/tmp, /dev/shm, ~/.cache and the test dir (minus the
cipher dir) before and after, and scans what changed, and the cipher dir's raw bytes, for every
caption and byte windows of every image.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from entrypoint.audit.auditctl import Auditctl
from tests.integration.leakprobe import (
    LeakProbe,
    dataset_needles,
    scan_tree,
    standard_roots,
    unique_dataset,
)
from tests.integration.run_support import (
    RawVault,
    RunProcess,
    children_of,
    prepare,
    raw_login_tokens,
    raw_vault_server,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.root, pytest.mark.slow]


@pytest.fixture(scope="module")
def raw_vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RawVault]:
    """A dev OpenBao with a raw file audit device, for this module's run."""
    yield from raw_vault_server(tmp_path_factory)


def _proc_hits(secrets: dict[str, bytes], allowed: dict[str, set[int]]) -> tuple[list[str], set[int]]:
    """Search every process's cmdline and environ; (hits as 'pid:file:label', pids read)."""
    hits, seen = [], set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        for part in ("cmdline", "environ"):
            try:
                data = Path(f"/proc/{pid}/{part}").read_bytes()
            except OSError:
                continue  # exited meanwhile
            seen.add(pid)
            hits += [f"{pid}:{part}:{label}" for label, value in secrets.items()
                     if value in data and pid not in allowed.get(label, set())]
    return hits, seen


def test_full_run_leaks_no_data_and_no_secret(raw_vault: RawVault, tmp_path: Path,
                                              tiny_model: Any, tiny_dataset: Path) -> None:
    dataset = unique_dataset(tiny_dataset, tmp_path / "src-dataset", uuid.uuid4().hex[:10])
    case = prepare(raw_vault.vault, tmp_path, tiny_model, dataset)
    needles = dataset_needles(dataset, tiny_dataset)
    probe = LeakProbe(standard_roots(tmp_path), needles, exclude=[case.cipher, dataset])
    secrets = {"passphrase": case.passphrase.encode(),
               "secret_id": (case.creds / "secret_id").read_bytes().strip(),
               "role_id": (case.creds / "role_id").read_bytes().strip(),
               "root token": raw_vault.vault.root_token.reveal_str().encode()}
    probe.start()
    run = RunProcess(case, steps=3, extra_env={"ST_AUDIT_MODE": "kernel"})
    try:
        assert run.wait_for("[train]"), "\n".join(run.lines)
        tokens = raw_login_tokens(raw_vault.log, case.role)
        assert len(tokens) == 2  # prepare()'s own login, then the run's
        secrets["run token"] = tokens[-1].encode()
        assert wait_until(lambda: bool(children_of(run.proc.pid)), timeout=30)
        trainer = children_of(run.proc.pid)[0]
        hits, seen = _proc_hits(secrets, {"root token": {raw_vault.vault.pid}})
        assert trainer in seen and run.proc.pid in seen
        assert hits == [], hits
    finally:
        code, out = run.finish()
    assert code == 0, out[-3000:]
    # No log line printed by `run` carries a secret, a caption or a path of this test.
    for label, value in secrets.items():
        assert value.decode() not in out, label
    for needle in needles:
        if needle.label.startswith("caption"):
            assert needle.data.decode() not in out, needle.label
    assert str(tmp_path) not in out
    report = probe.finish()
    assert report.changed >= 1  # the probe saw the run's writes (state dir, logs)
    assert report.hits == [], [(str(h.path), h.label) for h in report.hits]
    cipher = scan_tree(case.cipher, needles)
    assert cipher.scanned >= 20 and cipher.hits == [], cipher.hits
    assert not [r for r in Auditctl().ours() if str(tmp_path) in r]
    # The manifest records the `sealed` record's sequence number (truncation evidence).
    with case.opened() as ws:
        manifest = json.loads(next(ws.runs_dir.glob("*/manifest.json")).read_text())
        lines = (ws.audit_dir / "app.jsonl").read_text().splitlines()
    sealed = json.loads(lines[manifest["audit_seq"] - 1])
    assert sealed["event"] == "sealed" and sealed["fields"]["run_id"] == manifest["run_id"]
