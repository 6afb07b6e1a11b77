"""A small CLIP-style BPE tokenizer generated locally, for the tiny development model.

It has the same shape as the SD1.x CLIP tokenizer (byte-level alphabet, `</w>` word-end
variants, BPE merges, `<|startoftext|>`/`<|endoftext|>`, 77 positions) but a tiny made-up
merge table. Never downloads anything; never used for real models.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
MAX_LENGTH = 77
SD15_VOCAB_SIZE = 49408


def byte_alphabet() -> list[str]:
    """The 256 printable stand-ins for bytes used by byte-level BPE (CLIP/GPT-2 layout).

    Bytes that are printable Latin-1 map to themselves; the others are shifted to code
    points from 256 upwards, in byte order, so every byte has a visible, unique symbol.
    """
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]
    kept = set(keep)
    table: dict[int, str] = {b: chr(b) for b in keep}
    shift = 0
    for b in range(256):
        if b not in kept:
            table[b] = chr(256 + shift)
            shift += 1
    return [table[b] for b in range(256)]


def _merges() -> list[tuple[str, str]]:
    # Every pair of lower-case letters, inside and at the end of a word: enough for
    # multi-character tokens to exist, small enough to keep the embedding tiny.
    letters = string.ascii_lowercase
    pairs: list[tuple[str, str]] = []
    for a in letters:
        for b in letters:
            pairs.append((a, b + "</w>"))
    for a in letters:
        for b in letters:
            pairs.append((a, b))
    return pairs


def build_vocab(*, pad_to: int | None = None) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Return (vocab, merges). With `pad_to`, filler tokens make the vocabulary that size,
    so the special tokens sit at the SD1.x ids (49406/49407 for 49408)."""
    alphabet = byte_alphabet()
    tokens = [*alphabet, *(c + "</w>" for c in alphabet)]
    merges = _merges()
    tokens.extend(a + b for a, b in merges)
    if pad_to is not None:
        filler = pad_to - len(tokens) - 2
        if filler < 0:
            raise ValueError("pad_to is smaller than the generated vocabulary")
        tokens.extend(f"<|filler_{i}|>" for i in range(filler))
    tokens.extend([BOS, EOS])
    return {tok: i for i, tok in enumerate(tokens)}, merges


def write_tokenizer(out: Path, *, full_size: bool = False) -> int:
    """Write vocab.json, merges.txt and the tokenizer configs into `out`; return vocab size."""
    vocab, merges = build_vocab(pad_to=SD15_VOCAB_SIZE if full_size else None)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2", *(f"{a} {b}" for a, b in merges)]
    (out / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": MAX_LENGTH,
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "pad_token": EOS,
        "do_lower_case": True,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2), encoding="utf-8")
    return len(vocab)
