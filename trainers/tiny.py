"""A tiny causal LM and tokenizer made offline from a config: for smoke runs and tests on a CPU.

The tokenizer is a byte-level BPE trained on the given texts, with a ChatML chat template whose assistant turns
carry `{% generation %}` markers (so TRL's assistant-only loss works). The model is a 2-layer Llama, about 125k
parameters with a 512-token vocabulary.
"""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\n' }}"
    "{%- if message['role'] == 'assistant' %}{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{%- else %}{{- message['content'] + '<|im_end|>' }}{%- endif %}"
    "{{- '\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"
)
SPECIAL = ["<pad>", "<|im_start|>", "<|im_end|>"]


def make_tokenizer(texts, vocab_size: int = 512):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<|im_end|>", bos_token="<|im_start|>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def make_tiny_model(tokenizer, *, hidden: int = 64, layers: int = 2, heads: int = 4, seed: int = 0, kind: str = "causal"):
    """A config-built Llama; `kind="reward"` gives a sequence-classification model with one scalar output."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=1024,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True, num_labels=1)
    cls = LlamaForSequenceClassification if kind == "reward" else LlamaForCausalLM
    return cls(config)


def sample_texts(limit: int = 3000) -> list[str]:
    """Text to train the tiny tokenizer on: the embedded sample's prompts and answers."""
    import json

    from builders.sources.files import SAMPLE_DIR

    texts = []
    for name, fields in (("prompts", ("text",)), ("demonstrations", ("completion",)), ("rankings", ("completions",))):
        with open(SAMPLE_DIR / f"{name}.jsonl", encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                for f in fields:
                    v = row.get(f)
                    texts.extend(v if isinstance(v, list) else [v] if v else [])
    return texts[:limit]


def save_tiny(out: str | Path, *, texts=None, seed: int = 0, kind: str = "causal") -> Path:
    """Write a tiny model and its tokenizer to `out`; returns the folder."""
    out = Path(out)
    tok = make_tokenizer(texts or sample_texts())
    model = make_tiny_model(tok, seed=seed, kind=kind)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
