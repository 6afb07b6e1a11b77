"""Render a conversation with a prompt template and tokenize it with response-only labels.

Two renderers: the tokenizer's own chat template (assistant spans found by rendering each
prefix with the generation prompt, which must be a prefix of the full rendering) and a plain
alpaca layout for tokenizers without one. Tokens whose first character lies inside an
assistant span are trained on; every other label is -100 (IGNORE_INDEX), so the loss counts
response tokens only. Never logs or returns text in errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from secure_trainer.errors import ConfigError, DataRejected
from secure_trainer.llm.data import Turn

IGNORE_INDEX = -100
Span = tuple[int, int]


@dataclass(frozen=True)
class Encoded:
    """One tokenized example: ids and labels of equal length (labels -100 outside responses)."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]

    @property
    def trained_tokens(self) -> int:
        """How many tokens carry a label."""
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def resolve_template(template: str, tokenizer: Any) -> str:
    """`chat` or `alpaca` for this tokenizer. Raises ConfigError for `chat` without a template."""
    has_chat = bool(getattr(tokenizer, "chat_template", None))
    if template == "auto":
        return "chat" if has_chat else "alpaca"
    if template == "chat" and not has_chat:
        raise ConfigError("option 'template' is chat but the tokenizer has no chat template")
    return template


def _as_dicts(turns: Sequence[Turn]) -> list[dict[str, str]]:
    return [{"role": t.role, "content": t.content} for t in turns]


def render_chat(tokenizer: Any, turns: Sequence[Turn]) -> tuple[str, list[Span]]:
    """The chat-template rendering and the character spans of every assistant turn.

    Raises DataRejected when the template renders a prompt that is not a prefix of the
    conversation (we could not tell prompt from response tokens).
    """
    from jinja2 import TemplateError

    spans: list[Span] = []
    try:
        full = tokenizer.apply_chat_template(_as_dicts(turns), tokenize=False)
        prefixes = [(tokenizer.apply_chat_template(_as_dicts(turns[:i]), tokenize=False,
                                                   add_generation_prompt=True) if i else "",
                     tokenizer.apply_chat_template(_as_dicts(turns[:i + 1]), tokenize=False))
                    for i, turn in enumerate(turns) if turn.role == "assistant"]
    except TemplateError:
        # e.g. a template that forbids a system turn or demands strict alternation
        raise DataRejected("the model's chat template refused a conversation (check its "
                           "roles, or use template: alpaca)") from None
    for head, upto in prefixes:
        if not (full.startswith(upto) and upto.startswith(head)):
            raise DataRejected("the chat template does not render prompts as prefixes; use "
                               "template: alpaca")
        spans.append((len(head), len(upto)))
    return full, spans


def render_alpaca(tokenizer: Any, turns: Sequence[Turn]) -> tuple[str, list[Span]]:
    """The alpaca layout (### Instruction / ### Response) and the assistant spans (with EOS)."""
    eos = tokenizer.eos_token or ""
    parts: list[str] = [tokenizer.bos_token or ""]
    spans: list[Span] = []
    for turn in turns:
        if turn.role == "system":
            parts.append(f"{turn.content}\n\n")
        elif turn.role == "user":
            parts.append(f"### Instruction:\n{turn.content}\n\n### Response:\n")
        else:
            start = sum(len(p) for p in parts)
            parts.append(f"{turn.content}{eos}")
            spans.append((start, start + len(turn.content) + len(eos)))
            parts.append("\n\n")
    return "".join(parts), spans


def render(tokenizer: Any, turns: Sequence[Turn], template: str) -> tuple[str, list[Span]]:
    """Dispatch to the renderer `template` (`chat` or `alpaca`) names."""
    if template == "chat":
        return render_chat(tokenizer, turns)
    return render_alpaca(tokenizer, turns)


def label_tokens(offsets: Sequence[Span], ids: Sequence[int],
                 spans: Sequence[Span]) -> list[int]:
    """Labels for `ids`: the id when the token starts inside a span, else IGNORE_INDEX."""
    labels: list[int] = []
    for (start, end), token in zip(offsets, ids, strict=True):
        inside = end > start and any(a <= start < b for a, b in spans)
        labels.append(token if inside else IGNORE_INDEX)
    return labels


def encode(tokenizer: Any, turns: Sequence[Turn], template: str, cutoff_len: int) -> Encoded:
    """Render, tokenize (no extra special tokens: the rendering holds them) and label one
    conversation, truncated to `cutoff_len` tokens."""
    text, spans = render(tokenizer, turns, template)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])[:cutoff_len]
    offsets = [tuple(o) for o in enc["offset_mapping"]][:cutoff_len]
    return Encoded(input_ids=tuple(ids), labels=tuple(label_tokens(offsets, ids, spans)))

