"""Caption → SDXL conditioning as sdxl_train_network.py builds it: two encoders, one pooled vector.

Context = penultimate hidden states of CLIP-L (TE1) and OpenCLIP-bigG (TE2), concatenated on the
feature axis ([B, 77, 768 + 1280] full size); pooled = TE2's final-LayerNorm state at the first
end-of-text token, through TE2's text_projection (sd-scripts' pool workaround). With
`--max_token_length 150|225` both encoders see 75-token chunks (TE2's chunks get sd-scripts'
EOS/PAD fix-ups), the states are joined to 152/227 positions like SD1, and the pooled vector
comes from each caption's first chunk.
SECURITY: captions are private data; nothing here logs or stores them outside `TextCache`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from secure_trainer.models.text_encoding import join_chunks, tokenize


def tokenize_pair(tokenizer: Any, tokenizer_2: Any, captions: list[str],
                  max_token_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids [B, n_chunks, 77] for each encoder (n_chunks 1, 2 or 3).

    TE1's tokenizer pads with EOS (SD1 chunking); TE2's pads with "!", so each of its chunks is
    BOS + 75 tokens + (EOS | PAD) with sd-scripts' two fix-ups: a chunk whose 76th token is text
    ends in EOS, and a chunk that starts with PAD starts with EOS instead.
    """
    ids = tokenize(tokenizer, captions, max_token_length)
    window = int(tokenizer_2.model_max_length)
    if max_token_length in (None, 75) or max_token_length <= window - 2:
        ids_2 = tokenizer_2(captions, padding="max_length", truncation=True, max_length=window,
                            return_tensors="pt").input_ids.unsqueeze(1)
        return ids, ids_2
    total = max_token_length + 2
    flat = tokenizer_2(captions, padding="max_length", truncation=True, max_length=total,
                       return_tensors="pt").input_ids
    eos, pad = int(tokenizer_2.eos_token_id), int(tokenizer_2.pad_token_id)
    chunks = []
    for start in range(1, total - 1, window - 2):
        chunk = torch.cat([flat[:, :1], flat[:, start:start + window - 2], flat[:, -1:]], dim=1)
        ends_in_text = (chunk[:, -2] != eos) & (chunk[:, -2] != pad)
        chunk[:, -1] = torch.where(ends_in_text, torch.full_like(chunk[:, -1], eos), chunk[:, -1])
        starts_empty = chunk[:, 1] == pad
        chunk[:, 1] = torch.where(starts_empty, torch.full_like(chunk[:, 1], eos), chunk[:, 1])
        chunks.append(chunk)
    return ids, torch.stack(chunks, dim=1)


def _inner(module: Any) -> Any:
    return getattr(module, "module", module)  # unwrap DDP


def encode_pair(text_encoder: Any, text_encoder_2: Any, ids: torch.Tensor, ids_2: torch.Tensor,
                eos_token_id: int, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """(context [B, positions, h1 + h2], pooled [B, projection]) for ids from `tokenize_pair`.

    One chunk ⇒ 77 positions; k chunks ⇒ 1 + 75·k + 1. Either encoder may be a DDP wrapper
    (its forward is what syncs gradients).
    """
    if ids.dim() == 2:
        ids, ids_2 = ids.unsqueeze(1), ids_2.unsqueeze(1)
    batch, n_chunks, window = ids.shape
    flat, flat_2 = ids.reshape(-1, window).to(device), ids_2.reshape(-1, window).to(device)
    out1 = text_encoder(flat, output_hidden_states=True, return_dict=True)
    out2 = text_encoder_2(flat_2, output_hidden_states=True, return_dict=True)
    states1 = out1.hidden_states[-2].reshape(batch, n_chunks * window, -1)
    states2 = out2.hidden_states[-2].reshape(batch, n_chunks * window, -1)
    hidden = torch.cat([join_chunks(states1, n_chunks, window),
                        join_chunks(states2, n_chunks, window).to(states1.dtype)], dim=-1)
    # sd-scripts' pool workaround: the first EOS of each chunk (position 0 when it has none).
    first = (flat_2 == eos_token_id).int().argmax(dim=1)
    last = out2.last_hidden_state  # after final_layer_norm
    pooled_state = last[torch.arange(last.shape[0], device=last.device), first]
    projection = _inner(text_encoder_2).text_projection
    pooled = projection(pooled_state.to(projection.weight.dtype)).to(last.dtype)
    return hidden, pooled[::n_chunks]  # each caption's first chunk


@dataclass
class TextCache:
    """`--cache_text_encoder_outputs` in memory: frozen encoders give one output per caption.

    Kohya encodes every caption once before training; caching by caption text on first use is
    the same computation (the encoders are frozen and captions never change when caching is
    allowed). Lives only in this process's memory; never written to disk.
    """

    entries: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    def get(self, captions: list[str], compute: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Stacked (context, pooled) for `captions`; `compute(missing)` encodes unseen ones."""
        missing = [c for c in dict.fromkeys(captions) if c not in self.entries]
        if missing:
            with torch.no_grad():
                hidden, pooled = compute(missing)
            for i, caption in enumerate(missing):
                self.entries[caption] = (hidden[i].detach(), pooled[i].detach())
        return (torch.stack([self.entries[c][0] for c in captions]),
                torch.stack([self.entries[c][1] for c in captions]))
