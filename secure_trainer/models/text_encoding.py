"""Caption → CLIP conditioning like Kohya: clip_skip and 75/150/225-token prompts.

`--clip_skip n` takes hidden state −n and applies the encoder's final LayerNorm (n = 1 is the
normal last_hidden_state). `--max_token_length 150|225` splits the tokens into 75-token chunks,
wraps each chunk with BOS/EOS, encodes the chunks separately and concatenates the results
keeping one leading BOS and one trailing EOS state (152 / 227 positions), as sd-scripts does
for SD1 (pad == EOS) tokenizers.
SECURITY: captions are private data; nothing here logs or stores them.
"""

from __future__ import annotations

from typing import Any

import torch

from secure_trainer.errors import ConfigError

ALLOWED_MAX_TOKEN_LENGTHS = (None, 75, 150, 225)


def check_text_settings(text_encoder: Any, clip_skip: int | None,
                        max_token_length: int | None) -> None:
    """Validate clip_skip / max_token_length against the model. Raises ConfigError."""
    if max_token_length not in ALLOWED_MAX_TOKEN_LENGTHS:
        raise ConfigError("max_token_length must be 75, 150 or 225")
    if clip_skip is not None:
        layers = int(text_encoder.config.num_hidden_layers)
        if not 1 <= clip_skip <= layers:
            raise ConfigError(f"clip_skip must be between 1 and {layers} for this text encoder")


def tokenize(tokenizer: Any, captions: list[str], max_token_length: int | None) -> torch.Tensor:
    """Token ids [B, n_chunks, model_max_length]; n_chunks = 1, 2 or 3.

    Each chunk is BOS + 75 tokens (padded with the pad token) + EOS; for 75/None one chunk of
    the tokenizer's normal padded output.
    """
    window = int(tokenizer.model_max_length)  # 77 for SD1
    if max_token_length in (None, 75) or max_token_length <= window - 2:
        ids = tokenizer(captions, padding="max_length", truncation=True, max_length=window,
                        return_tensors="pt").input_ids
        single: torch.Tensor = ids.unsqueeze(1)
        return single
    total = max_token_length + 2
    ids = tokenizer(captions, padding="max_length", truncation=True, max_length=total,
                    return_tensors="pt").input_ids
    inner = window - 2
    chunks = []
    for start in range(1, total - 1, inner):
        body = ids[:, start:start + inner]
        chunks.append(torch.cat([ids[:, :1], body, ids[:, -1:]], dim=1))
    return torch.stack(chunks, dim=1)


def _final_layer_norm(text_encoder: Any) -> Any:
    # transformers >= 5.6 flattens CLIPTextModel (no `.text_model` level); older ones nest it.
    inner = getattr(text_encoder, "module", text_encoder)  # unwrap DDP
    inner = getattr(inner, "text_model", inner)
    return inner.final_layer_norm


def encode(text_encoder: Any, input_ids: torch.Tensor, clip_skip: int | None,
           device: torch.device | str) -> torch.Tensor:
    """Encoder hidden states [B, positions, hidden] for ids from `tokenize`.

    `text_encoder` may be a DDP wrapper (its forward is what syncs gradients). One chunk ⇒ 77
    positions; k chunks ⇒ 1 + 75·k + 1 positions (first BOS, each chunk's 75 inner states,
    last EOS).
    """
    batch, n_chunks, window = input_ids.shape
    flat = input_ids.reshape(batch * n_chunks, window).to(device)
    if clip_skip is None or clip_skip <= 1:
        states = text_encoder(flat, return_dict=True).last_hidden_state
    else:
        out = text_encoder(flat, output_hidden_states=True, return_dict=True)
        states = _final_layer_norm(text_encoder)(out.hidden_states[-clip_skip])
    states = states.reshape(batch, n_chunks * window, states.shape[-1])
    return join_chunks(states, n_chunks, window)


def join_chunks(states: torch.Tensor, n_chunks: int, window: int) -> torch.Tensor:
    """[B, n·window, H] chunk states → [B, 1 + n·(window − 2) + 1, H]: the first BOS, each
    chunk's inner states, the last EOS (unchanged for one chunk), as sd-scripts joins them."""
    if n_chunks == 1:
        return states
    pieces = [states[:, :1]]
    for chunk in range(n_chunks):
        begin = chunk * window + 1
        pieces.append(states[:, begin:begin + window - 2])
    pieces.append(states[:, -1:])
    return torch.cat(pieces, dim=1)
