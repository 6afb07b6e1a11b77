"""Kohya text conditioning: 75/150/225-token chunking and clip_skip."""

from __future__ import annotations

import pytest
import torch
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from secure_trainer.devtools.tokenizer import write_tokenizer
from secure_trainer.errors import ConfigError
from secure_trainer.models.text_encoding import check_text_settings, encode, tokenize


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[CLIPTokenizer, CLIPTextModel]:
    folder = tmp_path_factory.mktemp("tok")
    vocab = write_tokenizer(folder)
    tok = CLIPTokenizer.from_pretrained(folder, local_files_only=True)
    torch.manual_seed(0)
    model = CLIPTextModel(CLIPTextConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32,
                                         num_attention_heads=2, num_hidden_layers=3,
                                         bos_token_id=vocab - 2, eos_token_id=vocab - 1,
                                         pad_token_id=vocab - 1)).eval()
    return tok, model


def test_chunks_wrap_every_75_tokens_with_bos_and_eos(clip: tuple[CLIPTokenizer, CLIPTextModel]) -> None:
    tok, _ = clip
    long_caption = " ".join(["red"] * 200)
    ids = tokenize(tok, [long_caption, "a"], 150)
    assert ids.shape == (2, 2, 77)
    assert (ids[:, :, 0] == tok.bos_token_id).all() and (ids[:, :, -1] == tok.eos_token_id).all()
    assert tokenize(tok, ["a"], None).shape == (1, 1, 77)
    assert tokenize(tok, ["a"], 225).shape == (1, 3, 77)


def test_positions_and_clip_skip(clip: tuple[CLIPTokenizer, CLIPTextModel]) -> None:
    tok, model = clip
    with torch.no_grad():
        assert encode(model, tokenize(tok, ["a red circle"], 150), None, "cpu").shape == (1, 152, 16)
        assert encode(model, tokenize(tok, ["a red circle"], 225), None, "cpu").shape == (1, 227, 16)
        ids = tokenize(tok, ["a red circle"], None)
        skipped = encode(model, ids, 2, "cpu")
        out = model(ids[:, 0], output_hidden_states=True)
        assert torch.allclose(skipped, model.final_layer_norm(out.hidden_states[-2]))
        assert torch.allclose(encode(model, ids, 1, "cpu"), out.last_hidden_state)


def test_bad_text_settings(clip: tuple[CLIPTokenizer, CLIPTextModel]) -> None:
    _, model = clip
    with pytest.raises(ConfigError):
        check_text_settings(model, 4, None)
    with pytest.raises(ConfigError):
        check_text_settings(model, None, 100)
    check_text_settings(model, 3, 225)
