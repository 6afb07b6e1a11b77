"""A tiny random-weight Llama-architecture causal LM with a locally trained tokenizer.

The tokenizer is a byte-level BPE trained with `tokenizers` on a small embedded corpus (digits
split one per token, like Llama's), wrapped as a fast tokenizer with a ChatML-style chat
template; the model is `LlamaForCausalLM` built from a `LlamaConfig` (2 layers, hidden 64)
with seeded random weights, saved as safetensors. Deterministic for a given seed.
Never downloads anything; never writes outside the folder it is given; not for real use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Special tokens of the template; coupling: CHAT_TEMPLATE below uses the same strings.
BOS = "<|begin|>"
EOS = "<|end|>"
PAD = "<|pad|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = (PAD, BOS, EOS, IM_START, IM_END)

# ChatML-shaped: each turn is `<|im_start|>role\ncontent<|im_end|>\n`; the generation prompt
# opens an assistant turn, so a prompt rendering is a prefix of the full rendering.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_CORPUS = (
    "the quick brown fox jumps over the lazy dog",
    "a support agent answers questions about an account",
    "what is the balance of my account",
    "the account number of the client is",
    "please summarise the case file in one sentence",
    "the patient reported a mild headache and was given water",
    "instruction input output response assistant user system",
    "translate the sentence into plain english",
    "zero one two three four five six seven eight nine",
    "0 1 2 3 4 5 6 7 8 9 - . , : ; ? ! ( ) @",
    "my name is and my email address is",
    "the meeting is on monday at ten in the morning",
)
VOCAB_SIZE = 384


@dataclass(frozen=True)
class TinyLlmPaths:
    """Where the fixture was written (one Hugging Face model folder)."""

    model_dir: Path


def build_tokenizer() -> object:
    """Train the byte-level BPE on the embedded corpus; return a `PreTrainedTokenizerFast`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    # Repeated so that the merges are stable and common words become single tokens.
    core.train_from_iterator([line for line in _CORPUS for _ in range(4)], trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token=BOS, eos_token=EOS,
                                   pad_token=PAD, chat_template=CHAT_TEMPLATE,
                                   model_max_length=512)


def make_tiny_llm(out: Path, *, seed: int = 0, hidden_size: int = 64,
                  layers: int = 2) -> TinyLlmPaths:
    """Write the tokenizer and a random `LlamaForCausalLM` (safetensors) into `out`.

    Raises OSError when `out` is not writable (the CLI translates it).
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    ids = {tok: tokenizer.convert_tokens_to_ids(tok)  # type: ignore[attr-defined]
           for tok in (BOS, EOS, PAD)}
    config = LlamaConfig(
        vocab_size=len(tokenizer),  # type: ignore[arg-type]
        hidden_size=hidden_size, intermediate_size=hidden_size * 2,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=512, bos_token_id=ids[BOS], eos_token_id=ids[EOS],
        pad_token_id=ids[PAD], tie_word_embeddings=False,
        # Larger than the 0.02 default: the output head is frozen under LoRA, and with 0.02 its
        # rows are so short that no adapter can push a token's probability far from uniform.
        initializer_range=0.15)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=ids[BOS], eos_token_id=ids[EOS],
                                               pad_token_id=ids[PAD], do_sample=False)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)  # type: ignore[attr-defined]
    return TinyLlmPaths(model_dir=out)


def summarize(paths: TinyLlmPaths) -> str:
    """One line of counts (parameters, vocabulary) — never a path."""
    from safetensors import safe_open

    total = 0
    for file in sorted(paths.model_dir.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as fh:
            for key in fh.keys():  # noqa: SIM118 - safe_open has no __iter__
                total += _numel(fh.get_slice(key).get_shape())
    return f"tiny llm: {total} parameters, vocabulary {VOCAB_SIZE}, safetensors + chat template"


def _numel(shape: list[int]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count
