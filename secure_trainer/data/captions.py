"""Caption files and sd-scripts' per-sample caption pipeline (kohya-compat §1–2).

SECURITY: captions are private data. Nothing here logs, and no error message carries a caption
or a path — only what went wrong and how to fix it.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from pathlib import Path

from secure_trainer.errors import DataRejected
from secure_trainer.settings import SubsetSettings

_WILDCARD = re.compile(r"\{([^}]+)\}")


def normalize_extension(ext: str) -> str:
    """`txt` → `.txt`; an extension that already has its dot is kept."""
    return ext if ext.startswith(".") else "." + ext


def find_caption_file(image: Path, caption_extension: str) -> Path | None:
    """The caption file of `image`: `<path without extension><ext>`, else the face-crop fallback.

    The fallback (sd-scripts): when the stem has ≥ 5 `_`-separated fields, also try the stem
    without its last four fields. Returns None when neither exists. Raises nothing.
    """
    ext = normalize_extension(caption_extension)
    candidate = image.with_name(image.stem + ext)
    if candidate.is_file():
        return candidate
    fields = image.stem.split("_")
    if len(fields) >= 5:
        fallback = image.with_name("_".join(fields[:-4]) + ext)
        if fallback.is_file():
            return fallback
    return None


def read_caption(path: Path, *, enable_wildcard: bool) -> str:
    """One caption file: its first line stripped, or (wildcard) all non-empty lines joined by \\n.

    Raises DataRejected for an empty (0-line) file, a file that is not UTF-8, or an unreadable file.
    """
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise DataRejected(
            "a caption file is not valid UTF-8; re-save the captions as UTF-8"
        ) from None
    except OSError:
        raise DataRejected("a caption file could not be read") from None
    lines = text.splitlines()
    if not lines:
        raise DataRejected("a caption file is empty (0 bytes); write a caption or delete the file")
    if enable_wildcard:
        return "\n".join(line.strip() for line in lines if line.strip())
    return lines[0].strip()


@dataclass(frozen=True)
class CaptionContext:
    """When the sample is drawn: epoch (from 1), optimizer step, planned total steps."""

    epoch: int
    step: int = 0
    max_train_steps: int = 1600


def _expand_wildcards(caption: str, rng: random.Random | None) -> str:
    """Replace each `{a|b|c}` by a random option (`rng`), or by its first option (`rng` None)."""
    # `{{`/`}}` are escapes for literal braces: park them on markers the caption does not contain.
    open_mark, close_mark = "\u2985", "\u2986"
    while open_mark in caption or close_mark in caption:
        open_mark += "\u2985"
        close_mark += "\u2986"
    caption = caption.replace("{{", open_mark).replace("}}", close_mark)

    def pick(match: re.Match[str]) -> str:
        options = match.group(1).split("|")
        return rng.choice(options) if rng is not None else options[0]

    caption = _WILDCARD.sub(pick, caption)
    return caption.replace(open_mark, "{").replace(close_mark, "}")


def _split_tags(caption: str, subset: SubsetSettings) -> tuple[list[str], list[str], list[str]]:
    """Split into (fixed prefix, flexible, fixed suffix) tags."""
    sep = subset.caption_separator
    keep_sep = subset.keep_tokens_separator
    if keep_sep and keep_sep in caption:
        fixed_part, flex_part = caption.split(keep_sep, 1)
        suffix_part = ""
        if keep_sep in flex_part:
            flex_part, suffix_part = flex_part.split(keep_sep, 1)

        def clean(part: str) -> list[str]:
            return [t.strip() for t in part.split(sep) if t.strip()]

        return clean(fixed_part), clean(flex_part), clean(suffix_part)
    tokens = [t.strip() for t in caption.strip().split(sep)]
    if subset.keep_tokens > 0:
        return tokens[: subset.keep_tokens], tokens[subset.keep_tokens :], []
    return [], tokens, []


def _warmup_steps(subset: SubsetSettings, max_train_steps: int) -> int:
    step = subset.token_warmup_step
    # sd-scripts: a value below 1 is a fraction of the planned training steps.
    return math.floor(step * max_train_steps) if step < 1 else int(step)


def process_caption(
    caption: str,
    subset: SubsetSettings,
    ctx: CaptionContext,
    rng: random.Random,
    *,
    transforms: bool = True,
) -> str:
    """Apply the §2 pipeline to one raw caption and return the text the model is conditioned on.

    Order: prefix/suffix → dropout (rate, or every N-th epoch) → wildcard / first line →
    (if shuffle, tag dropout or warmup is on) split fixed/flexible/suffix, warmup truncation,
    shuffle, tag dropout, rejoin with ", " → secondary separator → caption separator.
    `transforms=False` keeps only the deterministic parts (prefix/suffix, first line or first
    wildcard option, secondary separator). Raises nothing.
    """
    if subset.caption_prefix:
        caption = subset.caption_prefix + " " + caption
    if subset.caption_suffix:
        caption = caption + " " + subset.caption_suffix
    if transforms:
        dropped = subset.caption_dropout_rate > 0 and rng.random() < subset.caption_dropout_rate
        every = subset.caption_dropout_every_n_epochs
        if dropped or (every > 0 and ctx.epoch % every == 0):
            return ""
    if subset.enable_wildcard and transforms:
        if "\n" in caption:
            caption = rng.choice(caption.split("\n"))
        caption = _expand_wildcards(caption, rng)
    elif subset.enable_wildcard:
        caption = _expand_wildcards(caption.split("\n")[0], None)
    else:
        caption = caption.split("\n")[0]

    warmup = _warmup_steps(subset, ctx.max_train_steps)
    if transforms and (subset.shuffle_caption or warmup > 0 or subset.caption_tag_dropout_rate > 0):
        fixed, flex, suffix = _split_tags(caption, subset)
        if warmup and ctx.step < warmup:
            count = math.floor(ctx.step * ((len(flex) - subset.token_warmup_min) / warmup))
            flex = flex[: count + subset.token_warmup_min]
        if subset.shuffle_caption:
            rng.shuffle(flex)
        if subset.caption_tag_dropout_rate > 0:
            flex = [t for t in flex if rng.random() >= subset.caption_tag_dropout_rate]
        caption = ", ".join(fixed + flex + suffix)

    if subset.secondary_separator:
        caption = caption.replace(subset.secondary_separator, subset.caption_separator)
    return caption
