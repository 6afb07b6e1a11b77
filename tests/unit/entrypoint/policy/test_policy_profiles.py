"""Loading profiles: built-ins, `extends`, overrides, and every policy-file error (exit 2).

Each bad file is written by the test; the error must name the file by basename, the line and
the rule id, and be a ConfigError (exit code 2).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from entrypoint.errors import ConfigError
from entrypoint.policy import load_profile
from entrypoint.policy.profiles import builtin_profiles, policy_dir

GOOD_RULE = """\
  - id: site.no_png
    description: PNG files are not allowed at this site.
    expression: "!('.png' in dataset.files_by_ext)"
    action: deny
    reason: "dataset: {dataset.images} images include PNG files — convert them to JPEG"
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    """Write a policy file and return its path."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load_error(path: Path) -> str:
    """Load `path`, expect a ConfigError with exit code 2, return its message."""
    with pytest.raises(ConfigError) as info:
        load_profile(str(path))
    assert info.value.exit_code == 2
    assert str(path.parent) not in info.value.message  # basename only, never the path
    return info.value.message


def test_builtin_profiles_load_and_differ() -> None:
    """strict, standard and dev load; same rule ids; dev relaxes, strict denies."""
    assert {"strict", "standard", "dev"} <= set(builtin_profiles())
    strict, standard, dev = (load_profile(n) for n in ("strict", "standard", "dev"))
    assert [r.id for r in strict.rules] == [r.id for r in standard.rules] == [r.id for r in dev.rules]
    assert dev.files == ("strict.yaml", "standard.yaml", "dev.yaml")
    assert len({strict.sha256, standard.sha256, dev.sha256}) == 3
    assert strict.rule("network.no_interfaces").action == "deny"
    assert standard.rule("network.no_interfaces").action == "warn"
    assert dev.rule("network.no_interfaces").enabled is False
    assert dev.rule("vault.tls").expression != strict.rule("vault.tls").expression
    for rule_id in ("process.non_root", "model.safetensors_only", "dataset.no_gps",
                    "dataset.no_caption_pii"):
        assert dev.rule(rule_id).action == "deny" and dev.rule(rule_id).enabled
    assert strict.rule("dataset.no_gps").phase == "post-mount"
    assert strict.rule("fs.workspace_gocryptfs").phase == "post-mount"
    assert strict.rule("vault.tls").phase == "pre-mount"


def test_profile_hash_is_stable_and_tracks_content(tmp_path: Path) -> None:
    """Same bytes ⇒ same hash; one changed byte in the chain ⇒ another hash."""
    site = write(tmp_path, "site.yaml", "name: site\nextends: strict\nrules:\n" + GOOD_RULE)
    first = load_profile(str(site)).sha256
    assert load_profile(str(site)).sha256 == first
    site.write_text(site.read_text().replace("convert them", "convert all"))
    assert load_profile(str(site)).sha256 != first


def test_site_profile_extends_strict_and_adds_a_rule(tmp_path: Path) -> None:
    """A site file adds a rule after strict's and may override or disable by id."""
    site = tmp_path / "site.yaml"
    site.write_text("name: site\nextends: strict\nrules:\n" + GOOD_RULE
                    + "override:\n  - id: fs.root_readonly\n    action: warn\n"
                    + "disable:\n  - training.dp_enabled\n", encoding="utf-8")
    profile = load_profile(str(site))
    assert profile.name == "site" and profile.files == ("strict.yaml", "site.yaml")
    assert profile.rules[-1].id == "site.no_png" and profile.rules[-1].phase == "post-mount"
    assert profile.rule("fs.root_readonly").action == "warn"
    assert profile.rule("fs.root_readonly").origin.startswith("site.yaml:")
    assert profile.rule("training.dp_enabled").enabled is False


def test_yaml_syntax_error_names_file_line_and_rule(tmp_path: Path) -> None:
    """A broken indentation inside a rule: file basename, line and the enclosing rule id."""
    bad = write(tmp_path, "broken.yaml", """\
        name: broken
        extends: strict
        rules:
          - id: site.first
            description: ok
            expression: process.uid != 0
           action: deny
            reason: "x"
        """)
    message = load_error(bad)
    assert message.startswith("broken.yaml:7: rule site.first: YAML syntax error")


def test_unknown_fact_in_expression(tmp_path: Path) -> None:
    """A CEL expression naming a fact that does not exist is refused at load time."""
    bad = write(tmp_path, "typo.yaml", """\
        name: typo
        extends: strict
        rules:
          - id: site.tattoos
            description: no tattoos
            expression: dataset.images_with_gps == 0 || dataset.tattoos == 0
            action: deny
            reason: "dataset: tattoos"
        """)
    assert load_error(bad) == "typo.yaml:4: rule site.tattoos: unknown fact 'dataset.tattoos'"


@pytest.mark.parametrize(("expression", "fragment"), [
    ("datset.images == 0", "unknown fact section 'datset'"),
    ("process.uid == '0'", "mixes types"),
    ("process.uid", "must evaluate to true or false"),
    ("process.uid ==", "does not parse"),
    ("process.uid != 0 && dataset.images > 0", "reads facts of both phases"),
])
def test_bad_expressions(tmp_path: Path, expression: str, fragment: str) -> None:
    """Typos, type mismatches, non-bool results, parse errors and mixed phases are exit 2."""
    bad = write(tmp_path, "bad.yaml", f"""\
        name: bad
        rules:
          - id: site.rule
            description: d
            expression: "{expression}"
            action: deny
            reason: r
        """)
    message = load_error(bad)
    assert message.startswith("bad.yaml:3: rule site.rule: ") and fragment in message


def test_unknown_fact_in_reason_template(tmp_path: Path) -> None:
    """Reason placeholders are checked against the schema too."""
    bad = write(tmp_path, "tmpl.yaml", """\
        name: tmpl
        rules:
          - id: site.rule
            description: d
            expression: dataset.images > 0
            action: deny
            reason: "dataset: {dataset.picture_count} images"
        """)
    assert "placeholder {dataset.picture_count} names no fact" in load_error(bad)


def test_rule_overridden_twice(tmp_path: Path) -> None:
    """Two overrides of one id in one file (or override + disable) are refused."""
    twice = write(tmp_path, "twice.yaml", """\
        name: twice
        extends: strict
        override:
          - id: fs.tmp_tmpfs
            action: warn
          - id: fs.tmp_tmpfs
            action: deny
        """)
    assert load_error(twice) == ("twice.yaml:6: rule fs.tmp_tmpfs: overridden twice "
                                 "(first at line 4)")
    both = write(tmp_path, "both.yaml", """\
        name: both
        extends: strict
        override:
          - id: fs.tmp_tmpfs
            action: warn
        disable:
          - fs.tmp_tmpfs
        """)
    assert load_error(both) == "both.yaml:7: rule fs.tmp_tmpfs: overridden twice (first at line 4)"


@pytest.mark.parametrize(("body", "expected"), [
    (("name: x\nextends: strict\nrules:\n  - id: fs.tmp_tmpfs\n    description: d\n"
     "    expression: fs.tmp_tmpfs\n    action: deny\n    reason: r\n"),
     "x.yaml:4: rule fs.tmp_tmpfs: defined in the base profile; use `override`"),
    ("name: x\nextends: strict\noverride:\n  - id: fs.nothing\n    action: warn\n",
     "x.yaml:4: rule fs.nothing: not defined by the base profile"),
    (("name: x\nrules:\n  - id: a.b\n    description: d\n    expression: fs.tmp_tmpfs\n"
     "    action: block\n    reason: r\n"), "x.yaml:3: rule a.b: `action` must be deny or warn"),
    (("name: x\nrules:\n  - id: a.b\n    description: d\n    expression: fs.tmp_tmpfs\n"
     "    action: deny\n    reason: r\n    severity: high\n"),
     "x.yaml:3: rule a.b: unknown key(s) severity"),
    (("name: x\nrules:\n  - id: a.b\n    description: d\n    expression: fs.tmp_tmpfs\n"
     "    action: deny\n    reason: r\n    phase: post-mount\n  - id: a.b\n    description: d\n"
     "    expression: fs.tmp_tmpfs\n    action: deny\n    reason: r\n"),
     "x.yaml:9: rule a.b: defined twice"),
    (("name: x\nrules:\n  - id: a.b\n    description: d\n    expression: process.uid != 0\n"
     "    action: deny\n    reason: r\n    phase: post-mount\n"),
     "x.yaml:3: rule a.b: reads facts not gathered in post-mount (process)"),
    ("name: x\nname: y\n", "x.yaml:2: rule (none): YAML syntax error: duplicate key 'name'"),
    ("name: x\nextend: strict\n", "x.yaml:1: unknown key(s) extend"),
])
def test_policy_file_errors(tmp_path: Path, body: str, expected: str) -> None:
    """Every structural mistake is exit 2 with file:line: rule id: what is wrong."""
    path = tmp_path / "x.yaml"
    path.write_text(body, encoding="utf-8")
    assert load_error(path).startswith(expected)


def test_unknown_profile_and_missing_file_and_cycle(tmp_path: Path) -> None:
    """Unknown names list the known ones; missing files name the basename; cycles stop."""
    with pytest.raises(ConfigError, match=r"unknown policy profile 'paranoid' \(known: .*strict"):
        load_profile("paranoid")
    with pytest.raises(ConfigError, match="policy file not found: gone.yaml"):
        load_profile(str(tmp_path / "gone.yaml"))
    write(tmp_path, "a.yaml", "name: a\nextends: b.yaml\n")
    write(tmp_path, "b.yaml", "name: b\nextends: a.yaml\n")
    with pytest.raises(ConfigError, match="a.yaml: `extends` forms a cycle"):
        load_profile(str(tmp_path / "a.yaml"))


def test_policy_dir_override(tmp_path: Path) -> None:
    """ST_POLICY_DIR points name lookup at another directory."""
    write(tmp_path, "only.yaml", "name: only\nrules:\n" + GOOD_RULE)
    assert policy_dir({"ST_POLICY_DIR": str(tmp_path)}) == tmp_path
    assert [r.id for r in load_profile("only", directory=tmp_path).rules] == ["site.no_png"]
    with pytest.raises(ConfigError, match=r"known: only\)"):
        load_profile("strict", directory=tmp_path)
