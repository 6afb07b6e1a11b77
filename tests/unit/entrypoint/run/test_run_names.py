"""dataset_names and the redactor's names and workspace-relative paths (real folders)."""

from __future__ import annotations

from pathlib import Path

from entrypoint.redact import Redactor
from entrypoint.run.run_names import caption_lines, dataset_names


def test_names_of_folders_and_stems(tmp_path: Path) -> None:
    subject = tmp_path / "datasets" / "people" / "10_jane_doe"
    subject.mkdir(parents=True)
    (subject / "jane_passport.png").write_bytes(b"x")
    (subject / "jane_passport.txt").write_text("a caption")
    names = dataset_names([Path("datasets/people/10_jane_doe")], tmp_path)
    assert {"people", "10_jane_doe", "jane_doe", "jane_passport", "jane_passport.png"} <= names
    assert "datasets" not in names
    assert dataset_names([Path("datasets/missing")], tmp_path) == {"missing"}


def test_redactor_scrubs_names_and_relative_paths() -> None:
    r = Redactor()
    for name in ("10_jane_doe", "jane_doe", "jane_passport", "abc"):
        r.register_name(name)
    assert r.scrub("loading datasets/people/10_jane_doe/x.png") == "loading <path>"
    assert r.scrub("bad file jane_passport.png for jane_doe") == "bad file <name>.png for <name>"
    assert r.scrub("abc and fabjane_doe2") == "abc and fabjane_doe2"  # short / inside a word
    assert r.scrub("3/4 it/s step 10/100 models/tiny") == "3/4 it/s step 10/100 <path>"


def test_caption_lines_are_scrubbed_whole(tmp_path: Path) -> None:
    folder = tmp_path / "datasets" / "d" / "1_x"
    folder.mkdir(parents=True)
    (folder / "a.txt").write_text("portrait of Jane at the harbour\nshort\n")
    (folder / "b.caption").write_text("a second caption line here")
    (folder / "link.txt").symlink_to(tmp_path / "elsewhere.txt")
    (tmp_path / "elsewhere.txt").write_text("not a caption of this dataset")
    lines = caption_lines([Path("datasets/d/1_x")], tmp_path)
    assert lines == {"portrait of Jane at the harbour", "a second caption line here"}
    r = Redactor()
    r.register_literals(lines)
    assert r.scrub("caption: portrait of Jane at the harbour") == "caption: <secret>"
