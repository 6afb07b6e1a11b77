"""Rules over hand-built facts, the decision record, and preflight phases on the real machine."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from pathlib import Path

import pytest

from entrypoint.errors import ConfigError, PolicyDenied
from entrypoint.policy import DeniedByPolicy, PolicyContext, load_profile, preflight
from entrypoint.policy.engine import evaluate, render_template
from entrypoint.policy.facts import (
    AuditFacts,
    DatasetFacts,
    Facts,
    FsFacts,
    GpuFacts,
    ModelFacts,
    NetworkFacts,
    ProcessFacts,
    TrainingFacts,
    VaultFacts,
)
from tests.unit.entrypoint.policy.test_policy_facts import (
    train_settings,
    write_gps_jpeg,
    write_safetensors,
)

GOOD = Facts(
    process=ProcessFacts(uid=0, euid=0, gid=0, groups=(), cap_effective=("CAP_SYS_ADMIN",),
                         cap_bounding=("CAP_SYS_ADMIN", "CAP_AUDIT_CONTROL"), no_new_privs=True,
                         seccomp="filter", is_pid1=True, in_container=True, drop_configured=True,
                         drop_uid=10001, drop_gid=10001, drop_uid_in_passwd=True,
                         core_limit=0, swap_on=False, retention_days=30),
    fs=FsFacts(root_readonly=True, tmp_fstype="tmpfs", tmp_tmpfs=True, tmp_noexec=True,
               workspace_configured=True, workspace_mounted=True,
               workspace_fstype="fuse.gocryptfs", workspace_options=("rw", "nosuid", "nodev"),
               workspace_backend="gocryptfs", cipher_dir_exists=True,
               cipher_dir_initialized=True, cipher_dir_mode="0700", cipher_dir_private=True,
               free_bytes=50 * 2**30),
    network=NetworkFacts(interfaces=(), default_route=False, dns_configured=False,
                         canary_configured=False, canary_reachable=None),
    gpu=GpuFacts(devices=1, driver_version="550.54", torch_cuda=True),
    vault=VaultFacts(address_configured=True, address_scheme="https", address_loopback=False,
                     ca_configured=True, tls_skip_verify=False, auth_method="approle",
                     token_ttl=None, token_renewable=None),
    audit=AuditFacts(mode="kernel", auditctl_available=True, kernel_enabled=True,
                     rules_loaded=0),
    model=ModelFacts(format="diffusers-safetensors", pickle_files=0, weight_files=4,
                     vae_format=None, network_weights_format=None),
    dataset=DatasetFacts(subsets=1, missing_dirs=0, images=10, captions=10,
                         files_by_ext={".png": 10, ".txt": 10}, unreadable_images=0,
                         images_with_exif=0, images_with_gps=0, images_with_serial=0,
                         images_with_xmp=0, images_with_iptc=0, images_with_png_text=0,
                         images_with_comment=0, captions_with_pii=0,
                         pii_by_type={"EMAIL": 0, "PHONE": 0}, config_strings_with_pii=0),
    training=TrainingFacts(log_level="warning", metadata_mode="redacted", dp_enabled=True,
                           dp_target_epsilon=8.0, output_in_workspace=True,
                           logging_in_workspace=None, model_in_workspace=True,
                           dataset_in_workspace=True),
)


def failed(decision) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """rule id -> result of every failed rule."""
    return {r.id: r.result for r in decision.results if r.failed}


def test_strict_allows_a_hardened_run() -> None:
    """The hand-built hardened fact document passes every strict rule."""
    decision = evaluate(load_profile("strict"), GOOD, phase="all")
    assert decision.verdict == "allow" and failed(decision) == {}
    assert {r.result for r in decision.results} == {"pass"}


@pytest.mark.parametrize(("section", "change", "rule_id"), [
    ("process", {"drop_configured": False, "drop_uid": None, "drop_gid": None},
     "process.non_root"),
    ("process", {"drop_uid": 0}, "process.non_root"),
    ("fs", {"tmp_tmpfs": False, "tmp_fstype": "ext4"}, "fs.tmp_tmpfs"),

    ("fs", {"workspace_backend": "plain", "workspace_fstype": "ext4"}, "fs.workspace_gocryptfs"),
    ("network", {"interfaces": ("eth0",)}, "network.no_interfaces"),
    ("network", {"canary_configured": True, "canary_reachable": True}, "network.canary_blocked"),
    ("vault", {"address_scheme": "http"}, "vault.tls"),
    ("audit", {"mode": "app"}, "audit.kernel_or_host"),
    ("model", {"format": "pickle", "pickle_files": 1}, "model.safetensors_only"),
    ("dataset", {"images_with_gps": 3, "images_with_exif": 3}, "dataset.no_gps"),
    ("dataset", {"images_with_png_text": 1}, "dataset.no_png_text"),
    ("dataset", {"captions_with_pii": 2, "pii_by_type": {"EMAIL": 1, "IBAN": 1}},
     "dataset.no_caption_pii"),
    ("training", {"log_level": "debug"}, "training.quiet_logs"),
    ("training", {"metadata_mode": "full"}, "training.metadata_redacted"),
    ("training", {"model_in_workspace": False}, "training.paths_in_workspace"),
    ("training", {"dataset_in_workspace": False}, "training.paths_in_workspace"),
    ("training", {"output_in_workspace": False}, "training.paths_in_workspace"),
    ("training", {"logging_in_workspace": False}, "training.paths_in_workspace"),
])
def test_each_bad_fact_is_denied_by_strict(section: str, change: dict[str, object],
                                           rule_id: str) -> None:
    """One bad fact ⇒ that rule fails as deny under strict, with an actionable reason."""
    facts = replace(GOOD, **{section: replace(getattr(GOOD, section), **change)})
    decision = evaluate(load_profile("strict"), facts, phase="all")
    assert decision.verdict == "deny"
    assert rule_id in failed(decision)
    reason = next(r.reason for r in decision.denials if r.id == rule_id)
    assert reason and reason.startswith(section + ":") and " — " in reason


def test_reasons_render_counts() -> None:
    """The GPS reason carries the count, the PII reason the non-zero types only."""
    facts = replace(GOOD, dataset=replace(GOOD.dataset, images_with_gps=3, captions_with_pii=2,
                                          pii_by_type={"EMAIL": 1, "IBAN": 1, "PHONE": 0}))
    decision = evaluate(load_profile("strict"), facts, phase="post-mount")
    reasons = {r.id: r.reason for r in decision.denials}
    assert reasons["dataset.no_gps"].startswith("dataset: 3 images carry GPS tags — run "
                                                "`secure-trainer data sanitize")
    assert "(EMAIL=1, IBAN=1)" in reasons["dataset.no_caption_pii"]
    assert render_template("{vault.token_ttl} {network.interfaces}",
                           {"vault": {"token_ttl": None}, "network": {"interfaces": []}}) == \
        "unknown none"


def test_standard_and_dev_relax_what_they_should() -> None:
    """Interfaces: strict deny, standard warn, dev off. http loopback Vault: dev only."""
    facts = replace(GOOD, network=replace(GOOD.network, interfaces=("eth0",)),
                    vault=replace(GOOD.vault, address_scheme="http", address_loopback=True))
    strict = evaluate(load_profile("strict"), facts, phase="all")
    standard = evaluate(load_profile("standard"), facts, phase="all")
    dev = evaluate(load_profile("dev"), facts, phase="all")
    assert failed(strict) == {"network.no_interfaces": "fail", "vault.tls": "fail",
                              "network.canary_configured": "fail"}
    assert [r.id for r in standard.warnings] == ["network.no_interfaces", "network.canary_configured"]
    assert [r.id for r in standard.denials] == ["vault.tls"]
    assert dev.verdict == "allow"
    remote_http = replace(facts, vault=replace(facts.vault, address_loopback=False))
    assert [r.id for r in evaluate(load_profile("dev"), remote_http, phase="all").denials] == [
        "vault.tls"]


def test_unknown_fact_value_fails_closed() -> None:
    """A rule that cannot be evaluated (null where a number is needed) counts as failed."""
    facts = replace(GOOD, training=replace(GOOD.training, dp_target_epsilon=None))
    decision = evaluate(load_profile("strict"), facts, phase="all")
    result = next(r for r in decision.results if r.id == "training.dp_epsilon")
    assert result.result == "fail"  # `type(x) != null_type && ...` handles null explicitly
    no_fs = replace(GOOD, fs=replace(GOOD.fs, free_bytes=None))
    assert evaluate(load_profile("strict"), no_fs, phase="all").verdict == "allow"


def test_error_result_counts_as_failure(tmp_path: Path) -> None:
    """An expression that errors at run time (null compared to an int) denies."""
    site = tmp_path / "site.yaml"
    site.write_text("name: site\nrules:\n  - id: site.uid\n    description: d\n"
                    "    expression: process.drop_uid > 1000\n    action: deny\n"
                    "    reason: 'process: drop uid {process.drop_uid}'\n")
    facts = replace(GOOD, process=replace(GOOD.process, drop_uid=None))
    decision = evaluate(load_profile(str(site)), facts, phase="all")
    assert [(r.id, r.result) for r in decision.denials] == [("site.uid", "error")]
    assert decision.denials[0].reason.startswith("process: drop uid unknown (the rule could not")


def test_phases_and_missing_sections() -> None:
    """Pre-mount skips post-mount rules and vice versa; a rule of the phase whose facts are
    absent is a deny error, never skipped (fail closed)."""
    profile = load_profile("strict")
    pre = evaluate(profile, replace(GOOD, model=None, dataset=None, training=None),
                   phase="pre-mount")
    results = {r.id: r for r in pre.results}
    assert results["dataset.no_gps"].result == "skipped"
    assert results["dataset.no_gps"].reason == "evaluated in phase post-mount"
    assert results["training.metadata_redacted"].reason == "evaluated in phase post-mount"
    assert results["vault.tls"].result == "pass"
    post = evaluate(profile, Facts(fs=GOOD.fs), phase="post-mount")
    results = {r.id: r for r in post.results}
    assert results["fs.workspace_gocryptfs"].result == "pass"
    assert (results["model.present"].result, results["model.present"].action) == ("error", "deny")
    assert "facts not gathered in phase post-mount (model)" in results["model.present"].reason
    assert results["vault.tls"].result == "skipped"
    assert post.verdict == "deny"


def test_missing_facts_deny_even_a_warn_rule() -> None:
    """A warn rule (dev's training.metadata_redacted) whose facts are missing in its phase
    denies; only `policy check` without trainer args may mark such rules not applicable."""
    dev = load_profile("dev")
    assert dev.rule("training.metadata_redacted").action == "warn"
    decision = evaluate(dev, replace(GOOD, training=None), phase="post-mount")
    result = next(r for r in decision.results if r.id == "training.metadata_redacted")
    assert (result.result, result.action) == ("error", "deny") and decision.denied
    check_all = evaluate(dev, replace(GOOD, training=None, model=None, dataset=None),
                         phase="all", not_applicable=frozenset({"model", "dataset", "training"}))
    result = next(r for r in check_all.results if r.id == "training.metadata_redacted")
    assert result.result == "skipped" and not check_all.denied
    vault_gone = evaluate(dev, replace(GOOD, vault=None), phase="all",
                          not_applicable=frozenset({"model", "dataset", "training"}))
    assert "vault.tls" in {r.id for r in vault_gone.denials}  # only the named sections skip


def test_training_rules_are_post_mount_in_every_profile() -> None:
    """Training facts come from the real trainer args, which `run` parses after the mount."""
    for name in ("strict", "standard", "dev"):
        profile = load_profile(name)
        assert {r.phase for r in profile.rules if r.id.startswith("training.")} == {"post-mount"}
    actions = {n: load_profile(n).rule("training.paths_in_workspace").action
               for n in ("strict", "standard", "dev")}
    assert actions == {"strict": "deny", "standard": "deny", "dev": "warn"}


def test_decision_record_and_audit_fields(tmp_path: Path) -> None:
    """Record holds profile name+hash, every rule id/result, failure reasons, facts hash."""
    profile = load_profile("dev")
    facts = replace(GOOD, fs=replace(GOOD.fs, tmp_tmpfs=False, tmp_fstype="ext4"),
                    model=replace(GOOD.model, format="pickle", pickle_files=1))
    decision = evaluate(profile, facts, phase="all")
    fields = decision.to_audit_fields()
    assert fields["profile"] == "dev" and fields["profile_sha256"] == profile.sha256
    assert fields["facts_sha256"] == facts.sha256() and len(fields["facts_sha256"]) == 64
    assert fields["verdict"] == "deny"
    assert [r["id"] for r in fields["rules"]] == [r.id for r in profile.rules]
    assert {f["id"]: f["action"] for f in fields["failed"]} == {
        "fs.tmp_tmpfs": "warn", "model.safetensors_only": "deny"}
    json.dumps(fields)  # JSON-safe
    for value in json.dumps(fields).split('"'):
        assert not value.startswith("/")  # no absolute path as a field value
    assert facts.sha256() != GOOD.sha256() and GOOD.sha256() == GOOD.sha256()
    with pytest.raises(PolicyDenied) as info:
        decision.raise_if_denied()
    assert info.value.exit_code == 3
    assert info.value.message.splitlines()[1].startswith("  [model.safetensors_only] model: ")
    text = decision.render()
    assert "DENY  model.safetensors_only" in text and "WARN  fs.tmp_tmpfs" in text
    assert text.splitlines()[-1].startswith("verdict: deny (1 deny, 1 warn,")


def test_preflight_pre_mount_on_this_machine(caplog: pytest.LogCaptureFixture,
                                             tmp_path: Path) -> None:
    """Real facts of this machine: dev with the drop configured passes (with a warning
    logged); dev without the drop denies process.non_root (we really are root)."""
    assert os.geteuid() == 0
    ws, cipher = tmp_path / "ws", tmp_path / "cipher"
    train = train_settings(tmp_path / "m.safetensors", tmp_path, ws / "out")
    env = {"VAULT_ADDR": "http://127.0.0.1:8200"}
    ctx = PolicyContext(profile=load_profile("dev"), env=env, train=train, workspace_dir=ws,
                        cipher_dir=cipher, drop_ids=(10001, 10001))
    with caplog.at_level(logging.WARNING, logger="entrypoint.policy"):
        decision = preflight("pre-mount", ctx)
    assert decision.verdict in ("allow", "warn") and decision.phase == "pre-mount"
    assert {r.result for r in decision.results if r.id.startswith("dataset.")} == {
        "skipped", "disabled"}
    for w in decision.warnings:
        assert f"policy warning {w.id}: " in caplog.text
    assert str(tmp_path) not in caplog.text
    with pytest.raises(DeniedByPolicy) as info:
        preflight("pre-mount", replace(ctx, drop_ids=None))
    assert [r.id for r in info.value.decision.denials] == ["process.non_root"]
    with pytest.raises(DeniedByPolicy):
        preflight("pre-mount", replace(ctx, drop_ids=(0, 0)))
    with pytest.raises(ConfigError):
        preflight("mid-flight", ctx)  # type: ignore[arg-type]


def test_preflight_post_mount_sees_the_dataset(tmp_path: Path) -> None:
    """Post-mount gathers model and dataset: a GPS JPEG is denied even under dev."""
    images = tmp_path / "10_x"
    images.mkdir()
    write_gps_jpeg(images / "a.jpg")
    model = write_safetensors(tmp_path / "m.safetensors")
    ctx = PolicyContext(profile=load_profile("dev"), train=train_settings(model, images, tmp_path))
    with pytest.raises(DeniedByPolicy) as info:
        preflight("post-mount", ctx)
    decision = info.value.decision
    assert [r.id for r in decision.denials] == ["dataset.no_gps"]
    assert decision.phase == "post-mount"
    assert next(r for r in decision.results if r.id == "model.safetensors_only").result == "pass"
    assert next(r for r in decision.results if r.id == "process.non_root").result == "skipped"


@pytest.mark.parametrize(("change", "rule_id"), [
    ({"core_limit": -1}, "process.no_core_dumps"),
    ({"core_limit": 4096}, "process.no_core_dumps"),
    ({"swap_on": True}, "process.no_swap"),
])
def test_core_dumps_and_swap_warn_under_strict(change: dict[str, object], rule_id: str) -> None:
    """Core dumps allowed or swap on: a warning (not a deny) naming the fix."""
    facts = replace(GOOD, process=replace(GOOD.process, **change))
    decision = evaluate(load_profile("strict"), facts, phase="all")
    assert decision.verdict == "warn" and [r.id for r in decision.warnings] == [rule_id]
    assert "--ulimit core=0" in decision.warnings[0].reason or "--memory-swap" in \
        decision.warnings[0].reason


def test_training_uid_with_an_account_natively() -> None:
    """A drop uid with a passwd entry: strict deny and standard/dev warn natively; fine inside
    the container (the image's own `trainer` user)."""
    native = replace(GOOD, process=replace(GOOD.process, in_container=False))
    assert [r.id for r in evaluate(load_profile("strict"), native, phase="all").denials] == [
        "process.dedicated_trainer_uid"]
    for name in ("standard", "dev"):
        decision = evaluate(load_profile(name), native, phase="all")
        assert "process.dedicated_trainer_uid" in {r.id for r in decision.warnings}
        assert not decision.denied or "process.dedicated_trainer_uid" not in {
            r.id for r in decision.denials}
    no_account = replace(native, process=replace(native.process, drop_uid_in_passwd=False))
    assert evaluate(load_profile("strict"), no_account, phase="all").verdict == "allow"


@pytest.mark.parametrize("days", [None, "", "0", "-3", "x"])
def test_strict_refuses_a_run_without_retention_before_the_mount(days: str | None) -> None:
    """No positive ST_RETENTION_DAYS: strict denies in the pre-mount phase (before Vault and
    the mount), standard warns, dev skips the rule; a positive count passes."""
    from entrypoint.policy.gatherers import gather_facts

    env = {} if days is None else {"ST_RETENTION_DAYS": days}
    profile = load_profile("strict")
    process = gather_facts(frozenset({"process"}), PolicyContext(profile, env=env)).process
    assert process is not None and process.retention_days is None
    facts = replace(GOOD, process=replace(GOOD.process, retention_days=None))
    decision = evaluate(profile, facts, phase="pre-mount")
    assert decision.verdict == "deny" and failed(decision) == {"process.retention_set": "fail"}
    assert [r.action for r in decision.results if r.failed] == ["deny"]
    warned = evaluate(load_profile("standard"), facts, phase="pre-mount")
    assert warned.verdict != "deny"
    assert [(r.id, r.action) for r in warned.results if r.failed] == [
        ("process.retention_set", "warn")]
    assert "process.retention_set" not in failed(evaluate(load_profile("dev"), facts,
                                                          phase="pre-mount"))
    ok = gather_facts(frozenset({"process"}),
                      PolicyContext(profile, env={"ST_RETENTION_DAYS": "30"})).process
    assert ok is not None and ok.retention_days == 30
