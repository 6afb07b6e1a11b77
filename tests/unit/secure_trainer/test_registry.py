"""Registry: lineage, subject lookup, erasure of every artefact of S and nothing of T, expiry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image

from secure_trainer.errors import ConfigError, DataRejected
from secure_trainer.privacy.pseudonym import Pseudonymizer
from secure_trainer.privacy.sanitize import sanitize_tree
from secure_trainer.registry import (
    Artefact,
    ArtefactKind,
    ImageRecord,
    Registry,
    read_subjects,
    subject_tag,
)

KEY = b"r" * 32
TOMB = b"t" * 32  # the tombstone key (from Vault in production)


@dataclass
class World:
    ws: Path
    src: Path
    registry: Registry
    s_hashes: set[str]
    t_hashes: set[str]
    run_a: str  # trained on everything (includes S)
    run_b: str  # trained on T only


def _import(ws: Path, src: Path, registry: Registry) -> None:
    subjects = read_subjects(src / "subjects.csv")
    dest = ws / "datasets" / "ds1"
    report = sanitize_tree(src, dest, pseudonymizer=Pseudonymizer(KEY),
                           blocked_hashes=registry.erased_hashes())
    registry.record_images(
        ImageRecord("ds1", str(dest / f.rel_path), f.sha256, subjects.get(f.source_rel),
                    tuple(str(dest / c) for c in f.captions), f.source_rel.as_posix())
        for f in report.files)


def _run_dir(ws: Path, run: str, with_cache: bool = True) -> list[Artefact]:
    base = ws / "runs" / run
    (base / "state" / "step-10").mkdir(parents=True)
    (base / "state" / "step-10" / "optimizer.bin").write_bytes(b"o" * 64)
    (base / "tb").mkdir()
    (base / "tb" / "events.out.tfevents.1").write_bytes(b"e" * 32)
    (base / "lora.safetensors").write_bytes(run.encode() * 16)
    arts = [Artefact(ArtefactKind.STATE, base / "state"),
            Artefact(ArtefactKind.TENSORBOARD, base / "tb")]
    if with_cache:
        (base / "cache.bin").write_bytes(b"c")
        arts.append(Artefact(ArtefactKind.CACHE, base / "cache.bin"))
    return arts


@pytest.fixture
def world(tmp_path: Path) -> World:
    ws, src = tmp_path / "ws", tmp_path / "src"
    ws.mkdir()
    (src / "4_alice").mkdir(parents=True)
    (src / "4_bob").mkdir(parents=True)
    colours = {"4_alice/a1.png": (200, 0, 0), "4_alice/a2.jpg": (0, 200, 0),
               "4_bob/b1.png": (0, 0, 200), "4_bob/other.png": (90, 90, 90)}
    for rel, colour in colours.items():
        Image.new("RGB", (16, 16), colour).save(src / rel)
        (src / rel).with_suffix(".txt").write_text(f"caption for {rel}")
    (src / "subjects.csv").write_text(
        "path,subject\n4_alice/a1.png,subject-S\n4_alice/a2.jpg,subject-S\n4_bob/b1.png,subject-T\n")
    registry = Registry(ws / "registry.sqlite")
    _import(ws, src, registry)
    s_hashes = {h for h, s in _hash_subjects(registry) if s == "subject-S"}
    t_hashes = {h for h, s in _hash_subjects(registry) if s == "subject-T"}
    all_hashes = registry.dataset_hashes("ds1")
    # Kohya-style latent cache next to one of S's images (must go with it).
    s_image = next(p for p in (ws / "datasets").rglob("*.png")
                   if _sha(p) in s_hashes)
    (s_image.parent / f"{s_image.stem}_0512x0512_sd.npz").write_bytes(b"latents")
    run_a = "20260101-a"
    registry.register_run(run_a, ws / "runs" / run_a / "lora.safetensors", "b" * 64, "ds1",
                          all_hashes, _run_dir(ws, run_a), "ml-team", "character LoRA",
                          "contract", expires=None)
    run_b = "20260101-b"
    arts_b = _run_dir(ws, run_b, with_cache=False)
    registry.register_run(run_b, Path("runs") / run_b / "lora.safetensors", None, "ds1",
                          t_hashes, arts_b, "ml-team", "style", "consent",
                          expires=timedelta(days=30))
    return World(ws, src, registry, s_hashes, t_hashes, run_a, run_b)


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _hash_subjects(registry: Registry) -> list[tuple[str, str | None]]:
    import sqlite3

    with sqlite3.connect(registry.path) as db:
        return list(db.execute("SELECT sha256, subject FROM images"))


def _files(ws: Path) -> set[str]:
    return {p.relative_to(ws).as_posix() for p in ws.rglob("*") if p.is_file()}


def test_register_and_show(world: World) -> None:
    """Both LoRAs are listed; show returns lineage size and artefacts."""
    loras = world.registry.loras()
    assert {lo.run_id for lo in loras} == {world.run_a, world.run_b}
    lo_a = next(lo for lo in loras if lo.run_id == world.run_a)
    rec, hashes, arts = world.registry.lora(lo_a.id)
    assert rec.owner == "ml-team" and len(hashes) == 4
    assert {k for k, _ in arts} == {"state", "tensorboard", "cache"}
    assert rec.path == f"runs/{world.run_a}/lora.safetensors"
    with pytest.raises(ConfigError):
        world.registry.lora("Lnope")


def test_find_subject_lists_everything_derived(world: World) -> None:
    """S's plan: run A's LoRA (not B's), its artefacts, S's 2 images, captions and cache."""
    plan = world.registry.plan_subject("subject-S")
    assert [lo.run_id for lo in plan.loras] == [world.run_a]
    assert set(plan.image_hashes) == world.s_hashes and len(world.s_hashes) == 2
    kinds = sorted(i.kind.value for i in plan.items)
    assert kinds == sorted(["lora", "state", "tensorboard", "cache", "dataset_image",
                            "dataset_image", "caption", "caption", "cache"])
    assert plan.subject == "subject-S" and "subject-S" not in repr(plan)


def test_erase_removes_all_of_s_and_nothing_of_t(world: World) -> None:
    """After erasing S: none of S's files or run A remain; all of T and run B remain."""
    before = _files(world.ws)
    plan = world.registry.plan_subject("subject-S")
    doomed = {i.rel_path for i in plan.items}
    report = world.registry.erase(plan, tombstone_key=TOMB)
    after = _files(world.ws)
    assert not any(f.startswith(f"runs/{world.run_a}/") for f in after)
    assert not any(_sha(world.ws / f) in world.s_hashes for f in after if f.endswith(".png"))
    assert not any(f.endswith("_sd.npz") for f in after)
    # Everything else is untouched: T's image and caption, the 4th image, run B entirely.
    expected_left = {f for f in before if not any(f == d or f.startswith(d + "/") for d in doomed)}
    assert after == expected_left
    assert any(f.startswith(f"runs/{world.run_b}/") for f in after)
    assert any(_sha(world.ws / f) in world.t_hashes for f in after if f.endswith(".png"))
    assert report.by_kind["lora"] == 1 and report.by_kind["dataset_image"] == 2
    assert [lo.run_id for lo in world.registry.loras()] == [world.run_b]
    assert world.registry.plan_subject("subject-T").image_hashes


def test_erasure_leaves_hashes_not_names(world: World) -> None:
    """Tombstone/audit fields carry hashes and counts; the DB file no longer holds S's id or
    source names (secure_delete + VACUUM)."""
    report = world.registry.erase(world.registry.plan_subject("subject-S"), tombstone_key=TOMB)
    fields = report.audit_fields()
    flat = repr(fields)
    assert "subject-S" not in flat and "alice" not in flat and "/" not in flat
    assert fields["subject_hmac"] == subject_tag("subject-S", TOMB)
    assert set(fields["image_sha256"]) == world.s_hashes  # type: ignore[arg-type]
    raw = world.registry.path.read_bytes()
    assert b"subject-S" not in raw and b"a1.png" not in raw and b"a2.jpg" not in raw
    assert b"subject-T" in raw  # T is still recorded


def test_reimport_refuses_erased_images(world: World) -> None:
    """Re-importing the same source does not bring S's images back."""
    world.registry.erase(world.registry.plan_subject("subject-S"), tombstone_key=TOMB)
    assert world.registry.erased_hashes() == frozenset(world.s_hashes)
    report = sanitize_tree(world.src, world.ws / "datasets" / "ds1",
                           pseudonymizer=Pseudonymizer(KEY),
                           blocked_hashes=world.registry.erased_hashes())
    assert report.rejected == {"erased": 2}


def test_expire_deletes_only_expired(world: World) -> None:
    """Run B expires in 30 days: nothing now, B (only) after 31 days."""
    assert world.registry.plan_expired().loras == ()
    later = datetime.now(UTC) + timedelta(days=31)
    plan = world.registry.plan_expired(later)
    assert [lo.run_id for lo in plan.loras] == [world.run_b]
    world.registry.erase(plan)
    assert not (world.ws / "runs" / world.run_b).exists() or not any(
        (world.ws / "runs" / world.run_b).rglob("*.safetensors"))
    assert (world.ws / "runs" / world.run_a / "lora.safetensors").exists()
    assert [lo.run_id for lo in world.registry.loras()] == [world.run_a]


def test_paths_outside_workspace_refused(world: World, tmp_path: Path) -> None:
    """Registering an artefact outside the workspace is refused; a symlink is unlinked only."""
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"x")
    with pytest.raises(DataRejected):
        world.registry.register_run("r", outside, None, "ds1", [], [], "o", "p", "l")
    link = world.ws / "runs" / world.run_a / "link"
    link.symlink_to(outside)
    world.registry.register_run(world.run_a, world.ws / "runs" / world.run_a / "lora.safetensors",
                                None, "ds1", world.s_hashes,
                                [Artefact(ArtefactKind.OTHER, link)], "o", "p", "l")
    world.registry.erase(world.registry.plan_subject("subject-S"), tombstone_key=TOMB)
    assert outside.exists() and not link.is_symlink()


def test_register_requires_owner_purpose_basis(world: World) -> None:
    """Empty governance fields are a ConfigError."""
    with pytest.raises(ConfigError):
        world.registry.register_run(world.run_a, world.ws / "runs" / world.run_a /
                                    "lora.safetensors", None, "ds1", [], [], "", "p", "l")


def test_subjects_csv_validation(tmp_path: Path) -> None:
    """A subjects.csv without the header, or with `..` paths, is rejected without values."""
    bad = tmp_path / "subjects.csv"
    bad.write_text("file,who\nx.png,s\n")
    with pytest.raises(DataRejected):
        read_subjects(bad)
    bad.write_text("path,subject\n../etc/passwd,s\n")
    with pytest.raises(DataRejected) as err:
        read_subjects(bad)
    assert "passwd" not in str(err.value)


def test_tombstone_is_keyed_not_a_plain_hash(world: World) -> None:
    """The tombstone holds HMAC(key, id): no sha256 of the id anywhere in the database, the tag
    checks out with the key, not with another key; a subject erasure without a key deletes
    nothing."""
    import hashlib

    before = _files(world.ws)
    with pytest.raises(ConfigError):
        world.registry.erase(world.registry.plan_subject("subject-S"))
    assert _files(world.ws) == before
    world.registry.erase(world.registry.plan_subject("subject-S"), tombstone_key=TOMB)
    raw = world.registry.path.read_bytes()
    assert hashlib.sha256(b"subject-S").hexdigest().encode() not in raw
    assert world.registry.tombstone_tags() == [subject_tag("subject-S", TOMB)]
    assert world.registry.is_erased_subject("subject-S", TOMB)
    assert not world.registry.is_erased_subject("subject-S", b"x" * 32)
    assert not world.registry.is_erased_subject("subject-T", TOMB)
    with pytest.raises(ValueError):
        subject_tag("subject-S", b"short")


def test_old_plain_hash_tombstones_are_blanked(tmp_path: Path) -> None:
    """A registry from before keyed tags loses its reversible sha256 column values on open."""
    import hashlib
    import sqlite3

    path = tmp_path / "registry.sqlite"
    old = hashlib.sha256(b"S-1042").hexdigest()
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE tombstones (seq INTEGER PRIMARY KEY AUTOINCREMENT, ts TEXT NOT "
                   "NULL, reason TEXT NOT NULL, subject_sha256 TEXT, image_hashes TEXT NOT NULL, "
                   "lora_hashes TEXT NOT NULL)")
        db.execute("INSERT INTO tombstones (ts, reason, subject_sha256, image_hashes, lora_hashes)"
                   " VALUES ('t', 'subject', ?, '[]', '[]')", (old,))
    registry = Registry(path)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT subject_sha256 FROM tombstones").fetchall() == [(None,)]
    assert registry.tombstone_tags() == []


def test_erase_finds_copies_outside_the_registry(world: World) -> None:
    """A byte copy of one of S's images put anywhere in the workspace (not through import) is
    planned and erased with its caption; the registry and T's images are left alone."""
    s_image = next(p for p in (world.ws / "datasets").rglob("*.png") if _sha(p) in world.s_hashes)
    stray = world.ws / "scratch" / "copy"
    stray.mkdir(parents=True)
    (stray / "x.png").write_bytes(s_image.read_bytes())
    (stray / "x.txt").write_text("caption of the copy")
    (stray / "y.png").write_bytes(b"unrelated but " + b"\0" * 10)
    plan = world.registry.plan_subject("subject-S")
    copies = {i.rel_path for i in plan.items if i.kind.value == "copy"}
    assert copies == {"scratch/copy/x.png"}
    world.registry.erase(plan, tombstone_key=TOMB)
    left = _files(world.ws)
    assert "scratch/copy/x.png" not in left and "scratch/copy/x.txt" not in left
    assert "scratch/copy/y.png" in left and "registry.sqlite" in left
    assert not [f for f in left if (world.ws / f).is_file() and _sha(world.ws / f)
                in world.s_hashes]
