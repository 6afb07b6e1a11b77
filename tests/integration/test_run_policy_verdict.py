"""One verdict: `run` refuses what `policy check` refuses, before the trainer starts.

A site profile (extends the native dev profile) turns the training rules back into denies, as
an operator would. For each deny-worthy trainer argument, `policy check` (run inside the
mounted workspace, like `run` parses its arguments) and `run` name the same denied rules; `run`
exits 3 after the post-mount policy phase, never reaches [train], records the denial in the
app audit log and leaves no new file outside the cipher dir. Real OpenBao, real gocryptfs.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.run_support import (
    TRAIN_ARGS,
    RunCase,
    RunProcess,
    app_events,
    prepare,
)

pytestmark = [pytest.mark.integration, pytest.mark.root, pytest.mark.slow]

_DENIED_LINE = re.compile(r"^\s+\[([a-z0-9_.]+)\] ")


@pytest.fixture(scope="module")
def case(dev_vault: Any, tmp_path_factory: pytest.TempPathFactory, tiny_model: Any,
         tiny_dataset: Path) -> Iterator[RunCase]:
    """One prepared workspace shared by the cases of this module (no run here trains)."""
    yield prepare(dev_vault, tmp_path_factory.mktemp("verdict"), tiny_model, tiny_dataset)


def _site_profile(case: RunCase) -> Path:
    """The operator's profile: native dev, with the training rules back to deny."""
    base = Path(case.policy())
    site = case.tmp_path / "site.yaml"
    extends = base.stem if base.suffix != ".yaml" else str(base)
    site.write_text(f"name: site\ndescription: site profile\nextends: {extends}\noverride:\n"
                    "  - id: training.metadata_redacted\n    action: deny\n"
                    "  - id: training.output_in_workspace\n    action: deny\n"
                    "  - id: training.paths_in_workspace\n    action: deny\n")
    return site


def _files_outside_cipher(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")
            if not p.is_dir() and not p.is_relative_to(root / "cipher")}


def _check_denials(case: RunCase, policy: Path, extra: tuple[str, ...]) -> tuple[int, set[str]]:
    """`policy check` with the run's arguments, from inside the mounted workspace."""
    with case.opened():
        done = subprocess.run(
            [sys.executable, "-m", "entrypoint.cli", "policy", "check", "--policy", str(policy),
             "--json", "--workspace", str(case.mnt), "--cipher-dir", str(case.cipher),
             *(["--no-privilege-drop"] if case.run_env()["ST_TRAIN_UID"] == "none" else []),
             *TRAIN_ARGS, "--max_train_steps", "1", *extra],
            cwd=case.mnt, env=case.run_env(), capture_output=True, text=True, timeout=300,
            check=False)
    assert done.stdout.startswith("{"), done.stderr[-2000:]
    doc = json.loads(done.stdout)
    return done.returncode, {r["id"] for r in doc["rules"]
                             if r["action"] == "deny" and r["result"] in ("fail", "error")}


@pytest.mark.parametrize(("extra", "rules"), [
    (("--metadata", "full"), {"training.metadata_redacted"}),
    (("--output_dir", "{plain}/out"), {"training.output_in_workspace",
                                       "training.paths_in_workspace"}),
    (("--logging_dir", "{plain}/logs"), {"training.output_in_workspace",
                                         "training.paths_in_workspace"}),
    (("--pretrained_model_name_or_path", "{plain}/model"), {"training.paths_in_workspace"}),
])
def test_run_and_check_agree_and_run_stops_before_training(
        case: RunCase, extra: tuple[str, ...], rules: set[str]) -> None:
    plain = case.tmp_path / "plain"
    plain.mkdir(exist_ok=True)
    if "{plain}/model" in extra:  # a model that exists, but in plaintext outside the workspace
        with case.opened() as ws:
            model = plain / "model"
            if not model.exists():
                shutil.copytree(ws.models_dir / "tiny", model)
    args = tuple(a.replace("{plain}", str(plain)) for a in extra)
    policy = _site_profile(case)
    check_code, check_denied = _check_denials(case, policy, args)
    assert check_code == 3 and check_denied == rules, check_denied

    before = _files_outside_cipher(case.tmp_path)
    run = RunProcess(case, steps=1, policy=str(policy), extra_args=args)
    code, out = run.finish(timeout=300)
    assert code == 3, out[-2000:]
    run_denied = {m.group(1) for line in out.splitlines() if (m := _DENIED_LINE.match(line))}
    assert run_denied == check_denied, out[-2000:]
    assert "[train]" not in out and "[workspace]" in out  # judged after the mount, before training
    assert str(plain) not in out
    assert _files_outside_cipher(case.tmp_path) == before
    assert not (plain / "out").exists() and not (plain / "logs").exists()
    assert not case.fs.is_mounted(case.mnt)
    with case.opened() as ws:
        events = [{"event": e["event"], **e["fields"]} for e in app_events(ws)]
        denied = [e for e in events if e["event"] == "policy_denied"]
        assert denied and denied[-1]["phase"] == "post-mount"
        assert {f["id"] for f in denied[-1]["failed"] if f["action"] == "deny"} == rules
        assert not any(e["event"] == "train_start" for e in events
                       if e.get("run_id") == denied[-1]["run_id"])


def test_pre_mount_and_dataset_denials_agree(case: RunCase) -> None:
    """Two more deny rules: training as root without the drop (pre-mount: `run` stops before
    Vault) and a GPS-tagged image (post-mount), each refused the same way by both commands."""
    from tests.unit.entrypoint.policy.test_policy_facts import write_gps_jpeg

    with case.opened() as ws:
        gps = ws.datasets_dir / "gps" / "10_x"
        if not gps.exists():
            gps.mkdir(parents=True)
            write_gps_jpeg(gps / "a.jpg")
            (gps / "a.txt").write_text("a photo")
    site = _site_profile(case)
    # process.non_root: the shipped dev profile, no privilege drop, as root.
    env = {"ST_TRAIN_UID": "none"}
    with case.opened():
        done = subprocess.run(
            [sys.executable, "-m", "entrypoint.cli", "policy", "check", "--policy", "dev",
             "--json", "--workspace", str(case.mnt), "--cipher-dir", str(case.cipher),
             "--no-privilege-drop", *TRAIN_ARGS, "--max_train_steps", "1"],
            cwd=case.mnt, env=case.run_env(**env), capture_output=True, text=True, timeout=300,
            check=False)
    check_denied = {r["id"] for r in json.loads(done.stdout)["rules"]
                    if r["action"] == "deny" and r["result"] in ("fail", "error")}
    assert done.returncode == 3 and check_denied == {"process.non_root"}
    run = RunProcess(case, steps=1, policy="dev", extra_env=env)
    code, out = run.finish(timeout=300)
    assert code == 3 and "[vault]" not in out, out[-2000:]
    assert {m.group(1) for line in out.splitlines()
            if (m := _DENIED_LINE.match(line))} == check_denied
    # dataset.no_gps, post-mount.
    gps_args = ("--train_data_dir", "datasets/gps")
    check_code, check_denied = _check_denials(case, site, gps_args)
    assert check_code == 3 and check_denied == {"dataset.no_gps"}
    run = RunProcess(case, steps=1, policy=str(site), extra_args=gps_args)
    code, out = run.finish(timeout=300)
    assert code == 3 and "[train]" not in out and "[workspace]" in out, out[-2000:]
    assert {m.group(1) for line in out.splitlines()
            if (m := _DENIED_LINE.match(line))} == check_denied


@pytest.mark.parametrize("situation", ["pickle_model", "pii_captions", "open_cipher_dir"])
def test_model_data_and_cipher_dir_denials_agree(case: RunCase, situation: str) -> None:
    """A pickle weight in the base model, personal data in captions (post-mount) and a cipher
    dir others may read (pre-mount): both commands refuse with the same rule."""
    from tests.unit.entrypoint.policy.test_policy_facts import (
        write_pickle_ckpt,
        write_pii_captions,
    )

    site = _site_profile(case)
    args: tuple[str, ...] = ()
    rule, phase_seen, phase_not_seen = "fs.cipher_dir_private", "[policy]", "[vault]"
    with case.opened() as ws:
        if situation == "pickle_model":
            model = ws.models_dir / "pickled"
            if not model.exists():
                shutil.copytree(ws.models_dir / "tiny", model)
                write_pickle_ckpt(model / "unet" / "diffusion_pytorch_model.bin")
            args = ("--pretrained_model_name_or_path", "models/pickled")
            rule, phase_seen, phase_not_seen = "model.safetensors_only", "[workspace]", "[train]"
        elif situation == "pii_captions":
            folder = ws.datasets_dir / "pii" / "10_x"
            if not folder.exists():
                folder.mkdir(parents=True)
                write_pii_captions(folder)
            args = ("--train_data_dir", "datasets/pii")
            rule, phase_seen, phase_not_seen = "dataset.no_caption_pii", "[workspace]", "[train]"
    mode = case.cipher.stat().st_mode & 0o7777
    if situation == "open_cipher_dir":
        case.cipher.chmod(0o755)
    try:
        check_code, check_denied = _check_denials(case, site, args) if situation != \
            "open_cipher_dir" else _check_closed(case, site)
        assert check_code == 3 and check_denied == {rule}, check_denied
        run = RunProcess(case, steps=1, policy=str(site), extra_args=args)
        code, out = run.finish(timeout=300)
    finally:
        case.cipher.chmod(mode)
    assert code == 3 and phase_seen in out and phase_not_seen not in out, out[-2000:]
    assert {m.group(1) for line in out.splitlines()
            if (m := _DENIED_LINE.match(line))} == check_denied


def _check_closed(case: RunCase, policy: Path) -> tuple[int, set[str]]:
    """`policy check` with the workspace closed (the cipher-dir rule is judged before a mount)."""
    done = subprocess.run(
        [sys.executable, "-m", "entrypoint.cli", "policy", "check", "--policy", str(policy),
         "--json", "--cipher-dir", str(case.cipher),
         *(["--no-privilege-drop"] if case.run_env()["ST_TRAIN_UID"] == "none" else [])],
        env=case.run_env(), capture_output=True, text=True, timeout=300, check=False)
    doc = json.loads(done.stdout)
    return done.returncode, {r["id"] for r in doc["rules"]
                             if r["action"] == "deny" and r["result"] in ("fail", "error")}
