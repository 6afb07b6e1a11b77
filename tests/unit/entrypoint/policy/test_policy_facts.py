"""Each fact gatherer against real files, the real process and the real machine.

Builders here (`write_gps_jpeg`, `write_png_text`, `write_pii_captions`, `write_pickle_ckpt`,
`write_safetensors`) make the bad inputs the policy tests reuse; nothing is mocked.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import torch
from PIL import ExifTags, Image
from PIL.PngImagePlugin import PngInfo
from safetensors.torch import save_file

from entrypoint.errors import ConfigError
from entrypoint.policy import PolicyContext, load_profile, parse_canary
from entrypoint.policy.context import Canary, TokenInfo
from entrypoint.policy.facts import SECTION_TYPES, Facts, fact_schema
from entrypoint.policy.gatherers import GATHERERS, gather_facts
from entrypoint.policy.gatherers import audit as audit_g
from entrypoint.policy.gatherers import dataset as dataset_g
from entrypoint.policy.gatherers import fs as fs_g
from entrypoint.policy.gatherers import gpu as gpu_g
from entrypoint.policy.gatherers import model as model_g
from entrypoint.policy.gatherers import network as network_g
from entrypoint.policy.gatherers import process as process_g
from entrypoint.policy.gatherers import training as training_g
from entrypoint.policy.gatherers import vault as vault_g
from secure_trainer.settings import (
    DatasetSettings,
    DPSettings,
    MetadataMode,
    SubsetSettings,
    TrainSettings,
)
from tests.conftest import REPO_ROOT

REPO = REPO_ROOT
PII_CAPTIONS = {
    "email": "portrait, mail jane.doe@example.com",
    "phone": "portrait, call +49 30 12345678",
    "iban": "invoice DE89 3704 0044 0532 0130 00",
    "card": "card 4111 1111 1111 1111 on the desk",  # passes Luhn
}


# --- builders (real files) ---------------------------------------------------------------

def write_gps_jpeg(path: Path) -> Path:
    """A JPEG whose EXIF holds a GPS IFD (built with Pillow's Image.Exif)."""
    exif = Image.Exif()
    exif[0x010F] = "ExampleCam"  # Make
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps.update({1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 0.0)})
    Image.new("RGB", (32, 32), (10, 120, 200)).save(path, "JPEG", exif=exif)
    return path


def write_png_text(path: Path) -> Path:
    """A PNG with a tEXt chunk (as generation tools write prompts)."""
    info = PngInfo()
    info.add_text("parameters", "portrait of a person")
    Image.new("RGB", (32, 32), (200, 40, 40)).save(path, "PNG", pnginfo=info)
    return path


def write_clean_png(path: Path) -> Path:
    """A PNG with no metadata chunk."""
    Image.new("RGB", (32, 32), (40, 200, 40)).save(path, "PNG")
    return path


def write_pii_captions(folder: Path) -> Path:
    """One clean image per PII kind, each captioned with that kind of personal data."""
    for name, text in PII_CAPTIONS.items():
        write_clean_png(folder / f"{name}.png")
        (folder / f"{name}.txt").write_text(text, encoding="utf-8")
    return folder


def write_pickle_ckpt(path: Path) -> Path:
    """A real pickle checkpoint written by torch.save (zip archive holding a pickle)."""
    torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    return path


def write_safetensors(path: Path) -> Path:
    """A real safetensors file."""
    save_file({"w": torch.zeros(2)}, str(path))
    return path


def train_settings(model: Path, image_dir: Path, output_dir: Path, **kw: object) -> TrainSettings:
    """A TrainSettings with one subset (captions `.txt`)."""
    subset = SubsetSettings(image_dir=image_dir, caption_extension=".txt",
                            class_tokens=kw.pop("class_tokens", None))  # type: ignore[arg-type]
    return TrainSettings(pretrained_model_name_or_path=model,
                         datasets=(DatasetSettings(subsets=(subset,), resolution=(64, 64)),),
                         output_dir=output_dir, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def profile():  # type: ignore[no-untyped-def]
    """The dev profile (gatherers do not depend on it)."""
    return load_profile("dev")


# --- registry ----------------------------------------------------------------------------

def test_every_section_has_one_gatherer_and_schema() -> None:
    """The registry, the Facts document and the CEL schema name the same sections."""
    assert set(GATHERERS) == set(SECTION_TYPES) == {f.name for f in fields(Facts)}
    assert set(fact_schema()) == set(SECTION_TYPES)


# --- process -----------------------------------------------------------------------------

def test_process_facts_of_this_process(profile) -> None:  # type: ignore[no-untyped-def]
    """uid/gid/caps match /proc and os; the drop comes from the context."""
    facts = process_g.gather(PolicyContext(profile=profile, drop_ids=(10001, 10002)))
    assert (facts.uid, facts.euid, facts.gid) == (os.getuid(), os.geteuid(), os.getgid())
    assert facts.is_pid1 is False
    if Path("/.dockerenv").exists():
        assert facts.in_container is True
    assert (facts.drop_configured, facts.drop_uid, facts.drop_gid) == (True, 10001, 10002)
    if os.geteuid() == 0:  # the test machine runs us as root with a full set
        assert "CAP_SYS_ADMIN" in facts.cap_effective
    none = process_g.gather(PolicyContext(profile=profile))
    assert (none.drop_configured, none.drop_uid) == (False, None)


def test_process_facts_in_a_hardened_child(tmp_path: Path) -> None:
    """A child started with no_new_privs and an empty bounding set reports exactly that."""
    script = ("import json; from entrypoint.policy import load_profile, PolicyContext;"
              "from entrypoint.policy.gatherers import process as p;"
              "f = p.gather(PolicyContext(profile=load_profile('dev')));"
              "print(json.dumps([f.no_new_privs, list(f.cap_bounding), f.seccomp]))")
    out = subprocess.run(["setpriv", "--no-new-privs", "--bounding-set", "-all",
                          sys.executable, "-c", script], cwd=REPO, capture_output=True,
                         text=True, timeout=60, check=True)
    nnp, bounding, seccomp = json.loads(out.stdout)
    assert nnp is True and bounding == []
    assert seccomp in ("disabled", "filter", "strict")


def test_cap_names_decodes_masks() -> None:
    """Capability masks decode to CAP_* names by bit."""
    assert process_g.cap_names("0") == ()
    assert process_g.cap_names("200000") == ("CAP_SYS_ADMIN",)
    assert process_g.cap_names("20000000") == ("CAP_AUDIT_WRITE",)


# --- fs ----------------------------------------------------------------------------------

def test_fs_facts_of_this_machine(profile, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """/tmp here is a disk filesystem (not tmpfs), / is writable; a 0700 cipher dir is private."""
    cipher = tmp_path / "cipher"
    cipher.mkdir(mode=0o700)
    facts = fs_g.gather(PolicyContext(profile=profile, cipher_dir=cipher,
                                      workspace_dir=tmp_path / "ws"))
    mounts = fs_g.parse_mountinfo(Path("/proc/self/mountinfo").read_text())
    tmp_mount = fs_g.mount_of(Path("/tmp"), mounts)
    assert tmp_mount is not None and facts.tmp_fstype == tmp_mount.fstype
    assert facts.tmp_tmpfs is (tmp_mount.fstype == "tmpfs")
    assert facts.root_readonly is False
    assert (facts.cipher_dir_exists, facts.cipher_dir_private, facts.cipher_dir_mode) == (
        True, True, "0700")
    assert facts.workspace_mounted is False
    assert facts.workspace_backend == "gocryptfs"  # empty cipher dir: the run will init it
    assert facts.free_bytes is not None and facts.free_bytes > 0


def test_fs_cipher_dir_states(profile, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A world-readable dir is not private; a non-empty dir without gocryptfs.conf is plain."""
    cipher = tmp_path / "cipher"
    cipher.mkdir()
    cipher.chmod(0o755)
    (cipher / "stray").write_bytes(b"x")
    facts = fs_g.gather(PolicyContext(profile=profile, cipher_dir=cipher))
    assert (facts.cipher_dir_private, facts.cipher_dir_mode) == (False, "0755")
    assert (facts.cipher_dir_initialized, facts.workspace_backend) == (False, "plain")
    (cipher / "gocryptfs.conf").write_text("{}")
    facts = fs_g.gather(PolicyContext(profile=profile, cipher_dir=cipher))
    assert (facts.cipher_dir_initialized, facts.workspace_backend) == (True, "gocryptfs")
    bare = fs_g.gather(PolicyContext(profile=profile))
    assert (bare.workspace_backend, bare.cipher_dir_private) == (None, None)


def test_mountinfo_parsing_and_lookup() -> None:
    """Escaped mountpoints, stacked mounts and longest-prefix lookup."""
    text = ("1 0 8:1 / / rw,relatime - ext4 /dev/vda rw\n"
            "2 1 0:5 / /tmp rw,nosuid - ext4 /dev/vda rw\n"
            "3 1 0:6 / /tmp rw,noexec,nosuid - tmpfs tmpfs rw,size=1024k\n"
            "4 1 0:7 / /data\\040dir ro - fuse.gocryptfs cipher rw\n")
    mounts = fs_g.parse_mountinfo(text)
    assert mounts[3].mountpoint == "/data dir"
    tmp = fs_g.mount_of(Path("/tmp/x"), mounts)
    assert tmp is not None and tmp.fstype == "tmpfs" and "noexec" in tmp.options
    root = fs_g.mount_of(Path("/tmpfoo"), mounts)
    assert root is not None and root.mountpoint == "/"


# --- network -----------------------------------------------------------------------------

def test_network_interfaces_match_sysfs(profile) -> None:  # type: ignore[no-untyped-def]
    """Interfaces other than lo equal /sys/class/net of this namespace; no canary ⇒ null."""
    facts = network_g.gather(PolicyContext(profile=profile))
    expected = sorted(p.name for p in Path("/sys/class/net").iterdir() if p.name != "lo")
    assert list(facts.interfaces) == expected
    assert "lo" not in facts.interfaces
    assert facts.canary_configured is False and facts.canary_reachable is None
    resolv = Path("/etc/resolv.conf")
    has_ns = resolv.exists() and "nameserver" in resolv.read_text()
    assert facts.dns_configured is has_ns


def test_network_canary_on_loopback(profile, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A listening 127.0.0.1 port is reachable; once closed it is not. (Loopback only.)"""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    try:
        facts = network_g.gather(PolicyContext(profile=profile, canary=Canary("127.0.0.1", port)))
        assert facts.canary_configured and facts.canary_reachable is True
    finally:
        listener.close()
    facts = network_g.gather(PolicyContext(profile=profile, canary=Canary("127.0.0.1", port)))
    assert facts.canary_reachable is False
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("# no servers\nsearch example\n")
    assert network_g.gather(PolicyContext(profile=profile, resolv_conf=resolv)).dns_configured \
        is False


def test_canary_must_be_an_ip_literal() -> None:
    """Host names are refused (resolving them would be egress); ports are range-checked."""
    assert parse_canary("127.0.0.1:9") == Canary("127.0.0.1", 9)
    assert parse_canary("[::1]:80") == Canary("::1", 80)
    for bad in ("example.com:80", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:x"):
        with pytest.raises(ConfigError):
            parse_canary(bad)


# --- gpu ---------------------------------------------------------------------------------

def test_gpu_facts_match_device_nodes(profile) -> None:  # type: ignore[no-untyped-def]
    """The device count equals the /dev/nvidiaN nodes; with none, torch cannot see CUDA."""
    facts = gpu_g.gather(PolicyContext(profile=profile))
    nodes = [p for p in Path("/dev").iterdir() if p.name.startswith("nvidia")
             and p.name[6:].isdigit()]
    assert facts.devices == len(nodes)
    assert facts.torch_cuda == (torch.cuda.is_available() if nodes else False)


# --- vault -------------------------------------------------------------------------------

def test_vault_facts_from_env(profile, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Scheme, loopback, CA, skip-verify and auth method come from the standard env."""
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    env = {"VAULT_ADDR": "https://vault.internal:8200", "VAULT_CACERT": str(ca),
           "ST_VAULT_AUTH": "approle"}
    facts = vault_g.gather(PolicyContext(profile=profile, env=env,
                                         vault_token=TokenInfo(ttl_seconds=600, renewable=True)))
    assert (facts.address_scheme, facts.address_loopback, facts.ca_configured) == (
        "https", False, True)
    assert (facts.auth_method, facts.tls_skip_verify, facts.token_ttl) == ("approle", False, 600)
    dev = vault_g.gather(PolicyContext(profile=profile, env={
        "VAULT_ADDR": "http://127.0.0.1:8200", "VAULT_TOKEN": "never-kept",
        "VAULT_CACERT": str(tmp_path / "absent.pem"), "ST_VAULT_TLS_SKIP_VERIFY": "1"}))
    assert (dev.address_scheme, dev.address_loopback, dev.auth_method) == ("http", True, "token")
    assert dev.ca_configured is False and dev.tls_skip_verify is True
    assert "never-kept" not in json.dumps(Facts(vault=dev).to_dict())
    empty = vault_g.gather(PolicyContext(profile=profile, env={}))
    assert (empty.address_configured, empty.address_scheme, empty.auth_method) == (
        False, None, None)


# --- audit -------------------------------------------------------------------------------

def test_audit_facts_match_auditctl(profile) -> None:  # type: ignore[no-untyped-def]
    """Mode from the context; kernel state as `auditctl -s` reports it (we run as root)."""
    facts = audit_g.gather(PolicyContext(profile=profile, audit_mode="host"))
    assert facts.mode == "host" and facts.auditctl_available is True
    status = subprocess.run(["auditctl", "-s"], capture_output=True, text=True, timeout=10,
                            check=True)
    enabled = next(line.split()[1] for line in status.stdout.splitlines()
                   if line.startswith("enabled "))
    assert facts.kernel_enabled is (enabled != "0")
    assert isinstance(facts.rules_loaded, int)
    with pytest.raises(ConfigError):
        PolicyContext(profile=profile, audit_mode="syslog")  # type: ignore[arg-type]


# --- model -------------------------------------------------------------------------------

def test_model_formats(profile, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """safetensors file, pickle .ckpt, diffusers folders (clean and with a .bin), missing."""
    out = tmp_path / "out"
    single = write_safetensors(tmp_path / "m.safetensors")
    ckpt = write_pickle_ckpt(tmp_path / "m.ckpt")
    folder = tmp_path / "diffusers"
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    write_safetensors(folder / "unet" / "diffusion_pytorch_model.safetensors")

    def facts(model: Path, **kw: object):  # type: ignore[no-untyped-def]
        train = train_settings(model, tmp_path, out, **kw)
        return model_g.gather(PolicyContext(profile=profile, train=train))

    assert (facts(single).format, facts(single).pickle_files) == ("safetensors", 0)
    assert (facts(ckpt).format, facts(ckpt).pickle_files) == ("pickle", 1)
    assert facts(folder).format == "diffusers-safetensors"
    assert facts(tmp_path / "nope").format == "missing"
    assert facts(single, vae=ckpt).vae_format == "pickle"
    assert facts(single, vae=ckpt).pickle_files == 1
    torch.save({"w": torch.zeros(1)}, folder / "unet" / "diffusion_pytorch_model.bin")
    mixed = facts(folder)
    assert (mixed.format, mixed.pickle_files, mixed.weight_files) == ("diffusers-mixed", 1, 2)


# --- dataset -----------------------------------------------------------------------------

def test_dataset_counts_metadata_and_pii(profile, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """GPS JPEG, tEXt PNG and four PII captions are counted — and nothing else leaks."""
    images = tmp_path / "10_subject"
    images.mkdir()
    write_gps_jpeg(images / "gps.jpg")
    write_png_text(images / "text.png")
    write_pii_captions(images)
    (images / "clean.txt").write_text("a red square", encoding="utf-8")
    (images / "broken.png").write_bytes(b"")
    (images / "notes.jane-doe-private").write_text("x")  # odd extension: not a fact key
    train = train_settings(tmp_path / "m.safetensors", images, tmp_path / "out",
                           class_tokens="jane.doe@example.com")
    facts = dataset_g.gather(PolicyContext(profile=profile, train=train))
    assert (facts.subsets, facts.missing_dirs, facts.images, facts.captions) == (1, 0, 7, 5)
    assert facts.files_by_ext == {"(other)": 1, ".jpg": 1, ".png": 6, ".txt": 5}
    assert (facts.images_with_gps, facts.images_with_exif, facts.images_with_png_text) == (1, 1, 1)
    assert facts.captions_with_pii == 4 and facts.config_strings_with_pii == 1
    assert {k: v for k, v in facts.pii_by_type.items() if v} == {
        "EMAIL": 2, "PHONE": 1, "IBAN": 1, "CREDIT_CARD": 1}
    blob = json.dumps(Facts(dataset=facts).to_dict())
    for secret in ("jane.doe", "4111", "DE89", "gps.jpg", "10_subject", str(tmp_path)):
        assert secret not in blob


def test_dataset_missing_folder(profile, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A subset folder that does not exist is counted, not an exception."""
    train = train_settings(tmp_path / "m", tmp_path / "absent", tmp_path / "out")
    facts = dataset_g.gather(PolicyContext(profile=profile, train=train))
    assert (facts.missing_dirs, facts.images) == (1, 0)


# --- training ----------------------------------------------------------------------------

def test_training_facts(profile, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Output inside the workspace (lexically, after `..`), logs outside, DP and metadata."""
    ws = tmp_path / "ws"
    train = train_settings(tmp_path / "m", tmp_path, ws / "runs" / ".." / "runs" / "r1",
                           logging_dir=tmp_path / "logs", metadata=MetadataMode.FULL,
                           dp=DPSettings(enabled=True, target_epsilon=8))
    facts = training_g.gather(PolicyContext(profile=profile, train=train, workspace_dir=ws,
                                            log_level="INFO"))
    assert (facts.output_in_workspace, facts.logging_in_workspace) == (True, False)
    assert (facts.metadata_mode, facts.log_level) == ("full", "info")
    assert facts.dp_enabled and facts.dp_target_epsilon == 8.0
    escaped = train_settings(tmp_path / "m", tmp_path, ws / ".." / "elsewhere")
    out = training_g.gather(PolicyContext(profile=profile, train=escaped, workspace_dir=ws))
    assert out.output_in_workspace is False and out.logging_in_workspace is None


def test_gather_facts_leaves_run_sections_out_without_settings(profile) -> None:  # type: ignore[no-untyped-def]
    """No trainer settings ⇒ model/dataset/training are not gathered (None)."""
    facts = gather_facts(["process", "model", "dataset", "training"],
                         PolicyContext(profile=profile))
    assert facts.gathered == {"process"}
