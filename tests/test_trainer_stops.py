"""Rollouts stop at the chat turn's end for every template family, including templates that `trim` the content
(the probe marker used to be wrapped in \\x1f, which `trim` strips, so Llama-3- and Gemma-style ends were lost)."""

from __future__ import annotations

import pytest

from evals.generate import stop_token_ids
from trainers.tiny import CHAT_TEMPLATE, make_tokenizer, sample_texts

LLAMA3 = ("{% for message in messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
          " + message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
          "{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")
GEMMA = ("{{ bos_token }}{% for message in messages %}{% if message['role'] == 'assistant' %}{% set role = 'model' %}"
         "{% else %}{% set role = message['role'] %}{% endif %}"
         "{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}"
         "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}")


@pytest.mark.parametrize("template,end", [(CHAT_TEMPLATE, "<|im_end|>"), (LLAMA3, "<|eot_id|>"), (GEMMA, "<end_of_turn>")],
                         ids=["chatml", "llama3-trim", "gemma-trim"])
def test_the_end_of_turn_token_is_a_stop_for_every_template_family(template, end):
    tok = make_tokenizer(sample_texts(200))
    tok.add_tokens(["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<start_of_turn>", "<end_of_turn>"], special_tokens=True)
    tok.chat_template = template
    tok.eos_token = "<pad>"  # a base model's EOS: only the template says where a turn ends
    assert tok.convert_tokens_to_ids(end) in stop_token_ids(tok)
