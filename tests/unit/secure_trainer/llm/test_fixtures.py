"""The text-side fixtures: the tiny Llama model loads offline from safetensors with its chat
template; the synthetic corpus has subjects, planted PII the scanner finds, and one duplicate."""

from __future__ import annotations

import json
from pathlib import Path

from secure_trainer.devtools.synthetic_text import ALPACA_FILE, CHAT_FILE, make_text_dataset
from secure_trainer.devtools.tiny_llm import make_tiny_llm
from secure_trainer.privacy.pii import scan_text


def test_tiny_llm_loads_offline_from_safetensors(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    paths = make_tiny_llm(tmp_path / "m")
    files = {p.name for p in paths.model_dir.iterdir()}
    assert "model.safetensors" in files
    assert not any(f.endswith((".bin", ".pt", ".pth", ".pkl")) for f in files)
    tok = AutoTokenizer.from_pretrained(paths.model_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(paths.model_dir, local_files_only=True,
                                                 use_safetensors=True)
    assert model.config.model_type == "llama" and model.config.hidden_size == 64
    prompt = [{"role": "user", "content": "hi"}]
    full = [*prompt, {"role": "assistant", "content": "hello"}]
    head = tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    whole = tok.apply_chat_template(full, tokenize=False)
    assert whole.startswith(head) and whole != head
    # digits are single tokens (the canary audit relies on it)
    assert [t for t in tok.tokenize("7-3-9") if t.isdigit()] == ["7", "3", "9"]


def test_tiny_llm_is_deterministic(tmp_path: Path) -> None:
    a = make_tiny_llm(tmp_path / "a", seed=3).model_dir / "model.safetensors"
    b = make_tiny_llm(tmp_path / "b", seed=3).model_dir / "model.safetensors"
    assert a.read_bytes() == b.read_bytes()


def test_text_dataset_has_subjects_pii_and_a_duplicate(tmp_path: Path) -> None:
    summary = make_text_dataset(tmp_path, subjects=5, per_subject=4)
    alpaca = [json.loads(ln) for ln in (tmp_path / ALPACA_FILE).read_text().splitlines()]
    chat = [json.loads(ln) for ln in (tmp_path / CHAT_FILE).read_text().splitlines()]
    assert len(alpaca) == len(chat) == summary.records == 21
    assert len({r["subject"] for r in alpaca}) == 5
    assert all(set(r) == {"instruction", "input", "output", "subject"} for r in alpaca)
    assert all([m["role"] for m in r["messages"]] == ["system", "user", "assistant"]
               for r in chat)
    flagged = sum(1 for r in alpaca if scan_text(str(r["input"])))
    assert flagged == summary.with_pii > 0
    rows = [json.dumps(r, sort_keys=True) for r in alpaca]
    assert len(rows) - len(set(rows)) == summary.duplicates == 1
