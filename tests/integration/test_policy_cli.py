"""`secure-trainer policy check` end to end: real machine facts, real bad inputs, exit codes.

The machine really runs us as root, with /tmp on disk and a network interface besides lo:
strict must deny it with readable reasons and dev must pass it (both as real subprocesses).
Bad inputs are built by each test; the CLI runs in-process (`main(argv)`) to stay fast.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from entrypoint.cli import main
from tests.unit.entrypoint.policy.test_policy_facts import (
    write_clean_png,
    write_gps_jpeg,
    write_pickle_ckpt,
    write_pii_captions,
    write_png_text,
    write_safetensors,
)

pytestmark = [pytest.mark.integration, pytest.mark.root]

REPO = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "secure-trainer")
Run = Callable[..., tuple[int, str, str]]


def clean_env(**extra: str) -> dict[str, str]:
    """The process env without VAULT_* and ST_* variables, plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("VAULT_", "ST_"))}
    env.update(extra)
    return env


@pytest.fixture()
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Iterator[Run]:
    """Run `secure-trainer ARGS` in-process; returns (exit code, stdout, stderr)."""
    for name in list(os.environ):
        if name.startswith(("VAULT_", "ST_")):
            monkeypatch.delenv(name)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def run(*args: str, **env: str) -> tuple[int, str, str]:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        code = main(["policy", "check", *args])
        out, err = capsys.readouterr()
        return code, out, err

    try:
        yield run
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def kohya_dataset(root: Path) -> Path:
    """train_data_dir with one Kohya subset folder holding a clean image and caption."""
    subset = root / "ds" / "10_item"
    subset.mkdir(parents=True)
    write_clean_png(subset / "clean.png")
    (subset / "clean.txt").write_text("a green square", encoding="utf-8")
    return subset


def trainer_args(model: Path, root: Path) -> list[str]:
    """Kohya flags for a run over root/ds writing into root/ws."""
    return ["--pretrained_model_name_or_path", str(model), "--train_data_dir", str(root / "ds"),
            "--output_dir", str(root / "ws" / "out"), "--resolution", "64",
            "--caption_extension", ".txt"]


def denials(stderr: str) -> dict[str, str]:
    """rule id -> reason from the `error[policy]` message."""
    out = {}
    for line in stderr.splitlines():
        if line.startswith("  [") and "] " in line:
            rule_id, reason = line[3:].split("] ", 1)
            out[rule_id] = reason
    return out


# --- real subprocesses: the machine as it is ------------------------------------------------

def test_strict_denies_this_machine_with_readable_reasons() -> None:
    """As root, /tmp on ext4, eth0 present, app audit, no Vault TLS: strict says no (exit 3)."""
    done = subprocess.run([CLI, "policy", "check", "--policy", "strict"], cwd=REPO,
                          env=clean_env(VAULT_ADDR="http://127.0.0.1:8200"),
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 3, done.stderr
    assert done.stderr.startswith("error[policy]: policy 'strict' denied the run (")
    found = denials(done.stderr)
    assert found["fs.tmp_tmpfs"].startswith("fs: /tmp is ")
    assert "not tmpfs — run the container with --tmpfs /tmp" in found["fs.tmp_tmpfs"]
    assert found["network.no_interfaces"].startswith("network: interfaces other than lo are "
                                                     "present (")
    assert found["vault.tls"].startswith("vault: the Vault address scheme is http ")
    assert found["audit.kernel_or_host"].startswith("audit: the audit mode is app — ")
    assert "process.non_root" not in found  # root init, but the drop to 10001 is configured
    assert "DENY  fs.tmp_tmpfs" in done.stdout and "verdict: deny" in done.stdout


def test_dev_passes_this_machine() -> None:
    """The same machine under dev (loopback http Vault, app audit, root + drop): exit 0."""
    done = subprocess.run([CLI, "policy", "check", "--policy", "dev"], cwd=REPO,
                          env=clean_env(VAULT_ADDR="http://127.0.0.1:8200",
                                        ST_VAULT_AUTH="approle"),
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    last = done.stdout.splitlines()[-1]
    assert last.startswith(("verdict: allow", "verdict: warn"))
    assert "WARN  fs.tmp_tmpfs" in done.stdout  # printed, not fatal
    assert "ok    vault.tls" in done.stdout and "ok    process.non_root" in done.stdout


def test_policy_file_error_is_exit_2_as_a_subprocess(tmp_path: Path) -> None:
    """A YAML syntax error: exit 2, `error[config]: broken.yaml:LINE: rule ID: ...`."""
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: broken\nextends: strict\nrules:\n  - id: site.first\n"
                   "    expression: [unclosed\n    action: deny\n")
    done = subprocess.run([CLI, "policy", "check", "--policy", str(bad)], cwd=REPO,
                          env=clean_env(), capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert done.stderr.startswith("error[config]: broken.yaml:")
    assert ": rule site.first: YAML syntax error" in done.stderr
    assert str(tmp_path) not in done.stderr


def test_non_root_process_needs_no_drop(tmp_path: Path) -> None:
    """Really non-root (setpriv to uid 10001): process.non_root passes without a drop."""
    done = subprocess.run(["setpriv", "--reuid", "10001", "--regid", "10001", "--clear-groups",
                           "--", CLI, "policy", "check", "--policy", "dev", "--json"],
                          cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=120, check=False)
    record = json.loads(done.stdout)
    assert record["facts"]["process"]["euid"] == 10001
    assert record["facts"]["process"]["drop_configured"] is False
    rule = next(r for r in record["rules"] if r["id"] == "process.non_root")
    assert rule["result"] == "pass"


# --- in-process: each bad input ------------------------------------------------------------

def test_running_as_root_without_drop_is_denied(cli: Run) -> None:
    """We are uid 0: with --no-privilege-drop even dev denies; drop to uid 0 too."""
    assert os.geteuid() == 0
    code, _, err = cli("--policy", "dev", "--no-privilege-drop")
    assert code == 3 and list(denials(err)) == ["process.non_root"]
    assert "training would keep root (init uid 0, drop configured: no" in err
    code, _, err = cli("--policy", "dev", "--drop-uid", "0", "--drop-gid", "0")
    assert code == 3 and list(denials(err)) == ["process.non_root"]


def test_pickle_ckpt_base_model(cli: Run, tmp_path: Path) -> None:
    """A torch.save .ckpt base model is denied (exit 3) with the format in the reason."""
    kohya_dataset(tmp_path)
    ckpt = write_pickle_ckpt(tmp_path / "base.ckpt")
    code, _, err = cli("--policy", "dev", "--workspace", str(tmp_path / "ws"),
                       *trainer_args(ckpt, tmp_path))
    assert code == 3
    assert denials(err) == {"model.safetensors_only": (
        "model: the base model format is pickle with 1 pickle weight files — convert them to "
        "safetensors (loading pickle can run arbitrary code)")}
    safe = write_safetensors(tmp_path / "base.safetensors")
    code, out, _ = cli("--policy", "dev", "--workspace", str(tmp_path / "ws"),
                       *trainer_args(safe, tmp_path))
    assert code == 0 and "ok    model.safetensors_only" in out


def test_gps_jpeg_is_denied(cli: Run, tmp_path: Path) -> None:
    """A JPEG with a GPS IFD: `dataset: 1 images carry GPS tags — run ... sanitize`."""
    subset = kohya_dataset(tmp_path)
    write_gps_jpeg(subset / "holiday.jpg")
    model = write_safetensors(tmp_path / "base.safetensors")
    code, _, err = cli("--policy", "dev", *trainer_args(model, tmp_path))
    assert code == 3
    assert denials(err)["dataset.no_gps"].startswith(
        "dataset: 1 images carry GPS tags — run `secure-trainer data sanitize SRC DST`")
    assert "holiday" not in err and str(tmp_path) not in err


def test_png_text_chunk_per_profile(cli: Run, tmp_path: Path) -> None:
    """A PNG tEXt chunk: strict denies, standard warns (exit 3 for other reasons only), dev off."""
    subset = kohya_dataset(tmp_path)
    write_png_text(subset / "prompted.png")
    model = write_safetensors(tmp_path / "base.safetensors")
    args = trainer_args(model, tmp_path)
    _, _, err = cli("--policy", "strict", *args)
    assert denials(err)["dataset.no_png_text"].startswith(
        "dataset: 1 PNG images carry text chunks")
    _, out, err = cli("--policy", "standard", *args)
    assert "dataset.no_png_text" not in denials(err) and "WARN  dataset.no_png_text" in out
    code, out, _ = cli("--policy", "dev", *args)
    assert "off   dataset.no_png_text" in out and code == 0


def test_pii_captions_are_denied_counts_only(cli: Run, tmp_path: Path) -> None:
    """Captions with an e-mail, a phone number, an IBAN and a Luhn-valid card number."""
    subset = kohya_dataset(tmp_path)
    write_pii_captions(subset)
    model = write_safetensors(tmp_path / "base.safetensors")
    code, out, err = cli("--policy", "dev", "--json", *trainer_args(model, tmp_path))
    assert code == 3
    reason = denials(err)["dataset.no_caption_pii"]
    assert reason.startswith("dataset: 4 captions and 0 caption settings contain personal data")
    for kind in ("EMAIL=1", "PHONE=1", "IBAN=1", "CREDIT_CARD=1"):
        assert kind in reason
    record = json.loads(out)
    assert record["facts"]["dataset"]["captions_with_pii"] == 4
    for leaked in ("jane.doe", "4111", "DE89", "12345678", str(tmp_path)):
        assert leaked not in out and leaked not in err


def test_http_vault_under_strict(cli: Run) -> None:
    """http:// Vault is denied by strict; https:// passes that rule."""
    _, _, err = cli("--policy", "strict", VAULT_ADDR="http://vault.example.internal:8200")
    assert denials(err)["vault.tls"].startswith("vault: the Vault address scheme is http")
    _, out, err = cli("--policy", "strict", "--json", VAULT_ADDR="https://vault.example.internal")
    assert "vault.tls" not in denials(err)
    assert next(r for r in json.loads(out)["rules"] if r["id"] == "vault.tls")["result"] == "pass"
    assert "vault.example.internal" not in out  # the address itself is not a fact


def test_interface_under_strict(cli: Run) -> None:
    """This machine has an interface besides lo: strict denies naming it."""
    def interfaces() -> set[str]:
        return {p.name for p in Path("/sys/class/net").iterdir() if p.name != "lo"}

    before = interfaces()
    assert before, "the test machine has a network interface"
    _, _, err = cli("--policy", "strict")
    # A container started or stopped meanwhile adds or removes a veth: check the stable ones.
    stable = before & interfaces()
    message = denials(err)["network.no_interfaces"]
    listed = message.split("present (", 1)[1].split(")", 1)[0].split(", ")
    assert stable <= set(listed) and listed == sorted(listed)


@pytest.mark.parametrize(("body", "expected"), [
    (("name: t\nextends: strict\nrules:\n  - id: site.r\n    description: d\n"
     "    expression: dataset.tattoos == 0\n    action: deny\n    reason: r\n"),
     "error[config]: t.yaml:4: rule site.r: unknown fact 'dataset.tattoos'"),
    (("name: t\nextends: strict\noverride:\n  - id: fs.tmp_tmpfs\n    action: warn\n"
     "  - id: fs.tmp_tmpfs\n    action: deny\n"),
     "error[config]: t.yaml:6: rule fs.tmp_tmpfs: overridden twice (first at line 4)"),
])
def test_policy_file_errors_exit_2(cli: Run, tmp_path: Path, body: str, expected: str) -> None:
    """Unknown fact and an id overridden twice: exit 2 with basename, line, rule id."""
    path = tmp_path / "t.yaml"
    path.write_text(body)
    code, out, err = cli("--policy", str(path))
    assert code == 2 and out == ""
    assert err.strip() == expected


def test_unknown_profile_name_and_file(cli: Run, tmp_path: Path) -> None:
    """Unknown name or missing file: exit 2."""
    code, _, err = cli("--policy", "paranoid")
    assert code == 2 and "unknown policy profile 'paranoid'" in err
    code, _, err = cli("--policy", str(tmp_path / "nope.yaml"))
    assert code == 2 and err.strip() == "error[config]: policy file not found: nope.yaml"


def test_custom_site_rule_is_enforced(cli: Run, tmp_path: Path) -> None:
    """A site file extends strict and adds a rule: it is evaluated and can deny."""
    site = tmp_path / "site.yaml"
    site.write_text("name: site\nextends: strict\nrules:\n"
                    "  - id: site.max_images\n"
                    "    description: At most 2 images per run at this site.\n"
                    "    expression: dataset.images <= 2\n"
                    "    action: deny\n"
                    "    reason: 'dataset: {dataset.images} images — split the run (max 2)'\n")
    subset = kohya_dataset(tmp_path)
    model = write_safetensors(tmp_path / "base.safetensors")
    _, out, err = cli("--policy", str(site), "--json", *trainer_args(model, tmp_path))
    assert "site.max_images" not in denials(err)
    assert next(r for r in json.loads(out)["rules"] if r["id"] == "site.max_images")["result"] \
        == "pass"
    for n in range(2):
        write_clean_png(subset / f"more{n}.png")
    code, _, err = cli("--policy", str(site), *trainer_args(model, tmp_path))
    assert code == 3
    assert denials(err)["site.max_images"] == "dataset: 3 images — split the run (max 2)"
