"""The §2 caption pipeline and caption files (kohya-compat checklist items 3 and 10)."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest

from secure_trainer.data.captions import (
    CaptionContext,
    find_caption_file,
    normalize_extension,
    process_caption,
    read_caption,
)
from secure_trainer.errors import DataRejected
from secure_trainer.settings import SubsetSettings

BASE = SubsetSettings(image_dir=Path("unused"))
CTX = CaptionContext(epoch=1)


def run(caption: str, ctx: CaptionContext = CTX, seed: int = 0, **changes: object) -> str:
    return process_caption(caption, replace(BASE, **changes), ctx, random.Random(seed))


def test_no_transform_passes_caption_through_unchanged() -> None:
    assert run("a,b ,  c") == "a,b ,  c"


def test_shuffle_rejoins_with_comma_space_and_keeps_tags() -> None:
    out = run("a,b,c,d,e", shuffle_caption=True, seed=1)
    assert sorted(out.split(", ")) == ["a", "b", "c", "d", "e"]
    outs = {run("a,b,c,d,e", shuffle_caption=True, seed=s) for s in range(20)}
    assert len(outs) > 1


def test_rejoin_uses_comma_space_even_with_another_separator() -> None:
    assert run("a; b; c", caption_separator=";", caption_tag_dropout_rate=1e-9) == "a, b, c"


def test_keep_tokens_fixes_the_first_tags() -> None:
    for seed in range(20):
        out = run("sks dog, red, blue, green", shuffle_caption=True, keep_tokens=1, seed=seed)
        assert out.startswith("sks dog, ")
        assert sorted(out.split(", ")[1:]) == ["blue", "green", "red"]


def test_keep_tokens_separator_fixes_prefix_and_suffix() -> None:
    for seed in range(20):
        out = run(
            "sks, dog ||| a, b, c ||| best, detailed",
            shuffle_caption=True,
            keep_tokens_separator="|||",
            seed=seed,
        )
        parts = out.split(", ")
        assert parts[:2] == ["sks", "dog"] and parts[-2:] == ["best", "detailed"]
        assert sorted(parts[2:5]) == ["a", "b", "c"]


def test_secondary_separator_groups_tags_and_is_replaced() -> None:
    for seed in range(10):
        out = run("a;;;b, c", shuffle_caption=True, secondary_separator=";;;", seed=seed)
        assert out in ("a,b, c", "c, a,b")
    assert run("a;;;b", secondary_separator=";;;") == "a,b"


def test_wildcards_pick_an_option_and_unescape_braces() -> None:
    outs = {run("a {red|blue} {{literal}}", enable_wildcard=True, seed=s) for s in range(30)}
    assert outs == {"a red {literal}", "a blue {literal}"}


def test_wildcard_multiline_picks_one_line() -> None:
    outs = {run("line one\nline two", enable_wildcard=True, seed=s) for s in range(30)}
    assert outs == {"line one", "line two"}
    assert run("line one\nline two") == "line one"


def test_dropout_rate_one_gives_empty_caption() -> None:
    assert run("a, b", caption_dropout_rate=1.0) == ""


def test_dropout_every_n_epochs_counts_from_one() -> None:
    sub = {"caption_dropout_every_n_epochs": 2}
    assert run("a", CaptionContext(epoch=1), **sub) == "a"
    assert run("a", CaptionContext(epoch=2), **sub) == ""
    assert run("a", CaptionContext(epoch=4), **sub) == ""


def test_tag_dropout_only_drops_flexible_tags() -> None:
    assert run("keep, x, y", caption_tag_dropout_rate=1.0, keep_tokens=1) == "keep"


def test_prefix_and_suffix_are_added_with_spaces() -> None:
    assert run("dog", caption_prefix="photo of", caption_suffix="best") == "photo of dog best"


def test_token_warmup_grows_the_tag_count() -> None:
    sub = {"token_warmup_min": 1, "token_warmup_step": 10}
    assert run("a, b, c, d, e", CaptionContext(epoch=1, step=0), **sub) == "a"
    assert run("a, b, c, d, e", CaptionContext(epoch=1, step=5), **sub) == "a, b, c"
    assert run("a, b, c, d, e", CaptionContext(epoch=1, step=10), **sub) == "a, b, c, d, e"
    # below 1: a fraction of the planned steps (0.5 × 20 = 10)
    frac = {"token_warmup_min": 1, "token_warmup_step": 0.5}
    assert run("a, b, c", CaptionContext(epoch=1, step=0, max_train_steps=20), **frac) == "a"


def test_transforms_off_is_deterministic() -> None:
    sub = replace(
        BASE,
        shuffle_caption=True,
        caption_dropout_rate=1.0,
        caption_prefix="p",
        enable_wildcard=True,
    )
    out = process_caption("{x|y} b, c", sub, CTX, random.Random(0), transforms=False)
    assert out == "p x b, c"


def test_caption_file_lookup_and_first_line(tmp_path: Path) -> None:
    image = tmp_path / "photo.png"
    (tmp_path / "photo.caption").write_text("first line\nsecond line\n", encoding="utf-8")
    (tmp_path / "photo.txt").write_text("from txt", encoding="utf-8")
    assert find_caption_file(image, ".caption") == tmp_path / "photo.caption"
    assert find_caption_file(image, normalize_extension("txt")) == tmp_path / "photo.txt"
    assert read_caption(tmp_path / "photo.caption", enable_wildcard=False) == "first line"
    assert (
        read_caption(tmp_path / "photo.caption", enable_wildcard=True) == "first line\nsecond line"
    )
    assert find_caption_file(tmp_path / "other.png", ".caption") is None


def test_face_crop_name_fallback(tmp_path: Path) -> None:
    (tmp_path / "person.txt").write_text("x", encoding="utf-8")
    assert find_caption_file(tmp_path / "person_1_2_3_4.png", ".txt") == tmp_path / "person.txt"
    assert find_caption_file(tmp_path / "person_1_2_3.png", ".txt") is None


def test_empty_and_non_utf8_captions_are_rejected_without_the_name(tmp_path: Path) -> None:
    empty = tmp_path / "secret_name.txt"
    empty.write_bytes(b"")
    with pytest.raises(DataRejected) as err:
        read_caption(empty, enable_wildcard=False)
    assert "secret_name" not in err.value.message and err.value.exit_code == 8
    bad = tmp_path / "secret_latin1.txt"
    bad.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(DataRejected) as err:
        read_caption(bad, enable_wildcard=False)
    assert "secret_latin1" not in err.value.message
