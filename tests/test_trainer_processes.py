"""Under `accelerate launch` every process runs the same script: one of them converts a GGUF (the others wait for
it), and a GGUF converts only when every weight of the architecture is in it (a missing output layer only if tied)."""

from __future__ import annotations

from pathlib import Path

import pytest

from builders.checkpoints import check_gguf_weights


def test_a_gguf_without_an_output_layer_is_accepted_only_when_embeddings_are_tied():
    check_gguf_weights(Path("m.gguf"), ["lm_head.weight"], [], tied=True)
    with pytest.raises(RuntimeError, match="lm_head may be missing only when the embeddings are tied"):
        check_gguf_weights(Path("m.gguf"), ["lm_head.weight"], [], tied=False)
    with pytest.raises(RuntimeError, match="missing"):
        check_gguf_weights(Path("m.gguf"), ["model.norm.weight"], [], tied=True)


def test_processes_asking_for_the_same_gguf_at_once_convert_it_once(tmp_path, monkeypatch):
    """Every process of `accelerate launch` resolves the same `gguf:` reference; before, each converted the file and
    they raced on the cache folder (rmtree / replace)."""
    import threading
    import time

    from builders import checkpoints

    calls = []

    def slow_convert(file, out, progress=True):
        calls.append(out)
        time.sleep(0.5)
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")
        return out

    monkeypatch.setenv("INSTRUCTKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(checkpoints, "convert_gguf", slow_convert)
    (tmp_path / "m.gguf").write_bytes(b"x")
    got = []
    threads = [threading.Thread(target=lambda: got.append(checkpoints.resolve_model(f"gguf:{tmp_path / 'm.gguf'}"))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(set(got)) == 1 and len(got) == 3
