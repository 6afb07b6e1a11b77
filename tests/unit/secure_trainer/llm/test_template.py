"""Response-only labels: prompt tokens are -100, response tokens (with the end-of-turn token)
keep their ids, for the chat template and the alpaca layout; records parse from both formats."""

from __future__ import annotations

from typing import Any

import pytest

from secure_trainer.devtools.tiny_llm import EOS, IM_END, build_tokenizer
from secure_trainer.errors import DataRejected
from secure_trainer.llm.data import Turn, parse_record
from secure_trainer.llm.template import IGNORE_INDEX, encode, label_tokens, resolve_template

CONVO = (Turn("system", "answer briefly."), Turn("user", "where does ana live?"),
         Turn("assistant", "ana lives in lima."), Turn("user", "and ben?"),
         Turn("assistant", "ben lives in oslo."))


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return build_tokenizer()


def _trained_text(tokenizer: Any, ids: tuple[int, ...], labels: tuple[int, ...]) -> str:
    assert all(lab in (IGNORE_INDEX, i) for i, lab in zip(ids, labels, strict=True))
    return str(tokenizer.decode([i for i, lab in zip(ids, labels, strict=True)
                                 if lab != IGNORE_INDEX]))


def test_chat_template_labels_only_assistant_turns(tokenizer: Any) -> None:
    enc = encode(tokenizer, CONVO, "chat", 512)
    text = _trained_text(tokenizer, enc.input_ids, enc.labels)
    assert text == f"ana lives in lima.{IM_END}\nben lives in oslo.{IM_END}\n"
    assert enc.labels[0] == IGNORE_INDEX


def test_alpaca_layout_labels_only_responses(tokenizer: Any) -> None:
    enc = encode(tokenizer, CONVO[1:3], "alpaca", 512)
    assert _trained_text(tokenizer, enc.input_ids, enc.labels) == f"ana lives in lima.{EOS}"
    full = tokenizer.decode(enc.input_ids)
    assert "### Instruction:\nwhere does ana live?" in full and "### Response:\n" in full


def test_cutoff_truncates_and_can_drop_every_label(tokenizer: Any) -> None:
    full = encode(tokenizer, CONVO, "chat", 512)
    short = encode(tokenizer, CONVO, "chat", 10)
    assert short.input_ids == full.input_ids[:10] and short.trained_tokens == 0


def test_label_tokens_by_offsets() -> None:
    offsets = [(0, 2), (2, 5), (5, 5), (5, 9), (9, 12)]
    assert label_tokens(offsets, [1, 2, 3, 4, 5], [(5, 12)]) == [
        IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, 4, 5]


def test_resolve_template(tokenizer: Any) -> None:
    assert resolve_template("auto", tokenizer) == "chat"
    assert resolve_template("alpaca", tokenizer) == "alpaca"


def test_parse_both_formats() -> None:
    alpaca = parse_record({"instruction": "q", "input": "ctx", "output": "a", "subject": 7}, 1)
    assert alpaca.turns == (Turn("user", "q\nctx"), Turn("assistant", "a"))
    assert alpaca.subject == "7"
    chat = parse_record({"messages": [{"role": "user", "content": "q"},
                                      {"role": "assistant", "content": "a"}]}, 2)
    assert chat.subject is None and len(chat.turns) == 2
    with pytest.raises(DataRejected, match="line 3"):
        parse_record({"messages": [{"role": "user", "content": "q"}]}, 3)
    with pytest.raises(DataRejected, match="line 4"):
        parse_record({"text": "raw"}, 4)


def test_template_errors_become_data_rejected() -> None:
    tok = build_tokenizer()
    # A template that refuses system turns (as some model families' templates do).
    tok.chat_template = ("{% for m in messages %}{% if m['role'] == 'system' %}"
                         "{{ raise_exception('no system') }}{% endif %}"
                         "{{ m['content'] }}{% endfor %}")
    with pytest.raises(DataRejected, match="refused a conversation"):
        encode(tok, CONVO, "chat", 64)
    # A template whose prompt is not a prefix of the conversation.
    tok.chat_template = ("{% for m in messages %}{{ m['content'] }}|{% endfor %}"
                         "{% if add_generation_prompt %}ASSISTANT:{% endif %}")
    with pytest.raises(DataRejected, match="prefixes"):
        encode(tok, CONVO[1:3], "chat", 64)
