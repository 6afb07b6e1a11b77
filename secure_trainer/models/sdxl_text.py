"""Caption → SDXL conditioning as sdxl_train_network.py builds it: two encoders, one pooled vector.

Context = penultimate hidden states of CLIP-L (TE1) and OpenCLIP-bigG (TE2), concatenated on the
feature axis ([B, 77, 768 + 1280] full size); pooled = TE2's final-LayerNorm state at the first
end-of-text token, through TE2's text_projection (sd-scripts' pool workaround). 75-token prompts
only (max_token_length 150/225 is refused for SDXL by the config layer).
SECURITY: captions are private data; nothing here logs or stores them outside `TextCache`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


def tokenize_pair(tokenizer: Any, tokenizer_2: Any, captions: list[str]) -> tuple[torch.Tensor,
                                                                                   torch.Tensor]:
    """Token ids [B, 77] for each encoder (TE2's tokenizer pads with "!" instead of EOS)."""
    out = []
    for tok in (tokenizer, tokenizer_2):
        out.append(tok(captions, padding="max_length", truncation=True,
                       max_length=int(tok.model_max_length), return_tensors="pt").input_ids)
    return out[0], out[1]


def _inner(module: Any) -> Any:
    return getattr(module, "module", module)  # unwrap DDP


def encode_pair(text_encoder: Any, text_encoder_2: Any, ids: torch.Tensor, ids_2: torch.Tensor,
                eos_token_id: int, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """(context [B, 77, h1 + h2], pooled [B, projection]) for ids from `tokenize_pair`.

    Either encoder may be a DDP wrapper (its forward is what syncs gradients).
    """
    ids, ids_2 = ids.to(device), ids_2.to(device)
    out1 = text_encoder(ids, output_hidden_states=True, return_dict=True)
    out2 = text_encoder_2(ids_2, output_hidden_states=True, return_dict=True)
    hidden = torch.cat([out1.hidden_states[-2], out2.hidden_states[-2].to(out1.hidden_states[-2].dtype)],
                       dim=-1)
    # First end-of-text position of each row (a row without one uses its last position).
    is_eos = ids_2 == eos_token_id
    first = torch.where(is_eos.any(dim=1), is_eos.int().argmax(dim=1),
                        torch.full_like(ids_2[:, 0], ids_2.shape[1] - 1))
    last = out2.last_hidden_state  # after final_layer_norm
    pooled_state = last[torch.arange(last.shape[0], device=last.device), first]
    pooled = _inner(text_encoder_2).text_projection(pooled_state.to(last.dtype))
    return hidden, pooled


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
