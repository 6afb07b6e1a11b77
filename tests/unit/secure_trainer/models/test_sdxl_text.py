"""SDXL text conditioning: penultimate states of both encoders, pooled bigG output, the cache."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from secure_trainer.models.sdxl_text import TextCache, encode_pair, tokenize_pair


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from secure_trainer.devtools.tiny_sdxl import make_tiny_sdxl
    from secure_trainer.models.loading import load_base_model

    return load_base_model(make_tiny_sdxl(tmp_path_factory.mktemp("sdxl")).diffusers_dir)


def test_context_and_pooled_are_kohyas(base: Any) -> None:
    captions = ["a red circle", "blue square on grass"]
    ids, ids_2 = tokenize_pair(base.tokenizer, base.tokenizer_2, captions)
    assert ids.shape == ids_2.shape == (2, 1, 77)
    assert (ids_2 == base.tokenizer_2.pad_token_id).any() and base.tokenizer_2.pad_token == "!"
    with torch.no_grad():
        hidden, pooled = encode_pair(base.text_encoder, base.text_encoder_2, ids, ids_2,
                                     base.tokenizer_2.eos_token_id, "cpu")
        ref1 = base.text_encoder(ids[:, 0], output_hidden_states=True).hidden_states[-2]
        ref2 = base.text_encoder_2(ids_2[:, 0], output_hidden_states=True)
    h1 = base.text_encoder.config.hidden_size
    assert hidden.shape == (2, 77, h1 + base.text_encoder_2.config.hidden_size)
    assert hidden.shape[-1] == base.unet.config.cross_attention_dim
    torch.testing.assert_close(hidden[..., :h1], ref1)
    torch.testing.assert_close(hidden[..., h1:], ref2.hidden_states[-2])
    # Pooled = projection of the final-norm state at the first EOS (= transformers' text_embeds).
    torch.testing.assert_close(pooled, ref2.text_embeds)
    assert pooled.shape == (2, base.text_encoder_2.config.projection_dim)


def test_cache_encodes_each_caption_once(base: Any) -> None:
    calls: list[list[str]] = []

    def compute(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(texts)
        ids, ids_2 = tokenize_pair(base.tokenizer, base.tokenizer_2, texts)
        return encode_pair(base.text_encoder, base.text_encoder_2, ids, ids_2,
                           base.tokenizer_2.eos_token_id, "cpu")

    cache = TextCache()
    first = cache.get(["a", "b", "a"], compute)
    second = cache.get(["b", "a"], compute)
    assert calls == [["a", "b"]]
    torch.testing.assert_close(first[0][1], second[0][0])
    assert not first[0].requires_grad


def test_long_prompts_chunk_like_sd_scripts(base: Any) -> None:
    caption = ["a red circle"]
    short_ids, short_ids_2 = tokenize_pair(base.tokenizer, base.tokenizer_2, caption)
    ids, ids_2 = tokenize_pair(base.tokenizer, base.tokenizer_2, caption, 150)
    assert ids.shape == ids_2.shape == (1, 2, 77)
    eos, pad = base.tokenizer_2.eos_token_id, base.tokenizer_2.pad_token_id
    assert torch.equal(ids_2[:, 0], short_ids_2[:, 0])  # a short caption fits the first chunk
    # The empty second chunk of TE2 starts BOS, EOS, PAD... (sd-scripts' fix-up).
    assert ids_2[0, 1, 1] == eos and (ids_2[0, 1, 2:] == pad).all()
    with torch.no_grad():
        hidden, pooled = encode_pair(base.text_encoder, base.text_encoder_2, ids, ids_2, eos, "cpu")
        _h, short_pooled = encode_pair(base.text_encoder, base.text_encoder_2, short_ids,
                                       short_ids_2, eos, "cpu")
    assert hidden.shape[:2] == (1, 152)
    torch.testing.assert_close(pooled, short_pooled)  # pooled comes from the first chunk


def test_text_encoder_only_targets_both_encoders(base: Any) -> None:
    """--network_train_text_encoder_only on SDXL: CLIP-L (72) + bigG (192) modules, no UNet."""
    from secure_trainer.models.lora import inject_lora
    from secure_trainer.settings import NetworkSettings

    handles = inject_lora(base, NetworkSettings(dim=4, alpha=4, train_text_encoder_only=True))
    prefixes = {name.split("_text_model")[0] for name in handles.modules}
    assert prefixes == {"lora_te1", "lora_te2"} and len(handles.modules) == 264
    assert len(handles.text_encoder_params("text_encoder_2")) == 2 * 192
    assert not handles.unet_params()
