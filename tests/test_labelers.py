"""The accurate labelers behind `--classifier`: an OpenAI-compatible endpoint (a local server here) and a Hugging Face
text classifier with a label map; the same flag on `classify`, `build` and `taxonomy eval`, and distillation into a
fast model with `taxonomy train --labels-from`."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from instructkit.cli import main
from tests.conftest import write_jsonl


def _answer(prompt: str) -> str:
    """The local server's labeler: a few rules, answered in the chatty way real models answer."""
    low = prompt.lower()
    if "assistant:" in low or "user:" in low:
        return "Use case: Chat"
    if "positive or negative" in low or "classify" in low:
        return "This is Classification."
    if low.startswith("prompt: \"write"):
        return "generation"
    return "Open QA"


class Endpoint:
    """An OpenAI-compatible server: /v1/models, /v1/chat/completions with usage; fails the first request with 503 and
    answers one prompt with nothing usable once, to exercise the retries."""

    def __init__(self):
        self.requests, self.rubrics = [], []
        self.failed_once = self.garbled_once = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _reply(self, obj, status=200):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._reply({"data": [{"id": "tiny-labeler"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if not outer.failed_once:
                    outer.failed_once = True
                    return self._reply({"error": "busy"}, status=503)
                outer.requests.append(body)
                outer.rubrics.append(body["messages"][0]["content"])
                prompt = body["messages"][1]["content"]
                content = _answer(prompt)
                if "rainbow" in prompt and not outer.garbled_once:
                    outer.garbled_once, content = True, "hmm, hard to say"
                self._reply({"choices": [{"message": {"role": "assistant", "content": content}}],
                             "usage": {"prompt_tokens": 100, "completion_tokens": 3}})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


PROMPTS = ["User: hi\nAssistant: hello!\nUser: how are you?", "Is this review positive or negative? 'Great phone.'",
           "Write a haiku about rain.", "Why is there a rainbow after rain?", "Who wrote Hamlet?"]


@pytest.fixture()
def endpoint(monkeypatch, tmp_path):
    monkeypatch.setenv("INSTRUCTKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("taxonomy.labelers.time.sleep", lambda s: None)
    e = Endpoint()
    yield e
    e.server.shutdown()


def test_llm_labeler_rubric_retries_cache_and_tokens(endpoint):
    from taxonomy.categories import CATEGORIES, DEFINITIONS
    from taxonomy.labelers import LLMLabeler

    lab = LLMLabeler(endpoint.url)  # no #MODEL: the endpoint's first listed model
    assert lab.model == "tiny-labeler"
    labels, _ = lab.predict(PROMPTS)
    assert labels == ["Chat", "Classification", "Generation", "Open QA", "Open QA"]
    assert all(c in endpoint.rubrics[0] and DEFINITIONS[c] in endpoint.rubrics[0] for c in CATEGORIES)
    # 503 retried; the garbled answer asked again with a stricter note: 5 prompts, 6 answered requests
    assert len(endpoint.requests) == 6 and lab.stats["prompt_tokens"] == 600 and lab.stats["unreadable"] == 0
    again = LLMLabeler(f"{endpoint.url}#tiny-labeler")
    assert again.predict(PROMPTS + PROMPTS[:2])[0] == labels + labels[:2] and len(endpoint.requests) == 6  # all cached


def test_one_flag_on_classify_build_and_taxonomy_eval(endpoint, tmp_path, capsys):
    spec = f"llm:{endpoint.url}#tiny-labeler"
    src = write_jsonl(tmp_path / "p.jsonl", [{"text": t} for t in PROMPTS])
    assert main(["classify", "--in", str(src), "--out", str(tmp_path / "o.jsonl"), "--classifier", spec, "--quiet"]) == 0
    rows = [json.loads(line) for line in open(tmp_path / "o.jsonl")]
    assert [r["category"] for r in rows] == ["Chat", "Classification", "Generation", "Open QA", "Open QA"]

    labels = write_jsonl(tmp_path / "l.jsonl", [{"text": t, "label": lab} for t, lab in
                                                zip(PROMPTS, ["Chat", "Classification", "Generation", "Open QA", "Chat"])])
    assert main(["taxonomy", "eval", "--labels", str(labels), "--classifier", spec]) == 0
    assert "macro-F1" in capsys.readouterr().out

    out = tmp_path / "build"
    assert main(["build", "--out", str(out), "--classifier", spec, "--quiet"]) == 0
    report = json.loads((out / "build_report.json").read_text())
    assert spec.replace("llm:", "") in json.dumps(report)  # the report names the labeler


def test_distil_an_llm_labeler_into_a_fast_model(endpoint, tmp_path):
    from taxonomy.model import UseCaseClassifier

    texts = ([f"User: hi number {i}\nAssistant: hello\nUser: tell me more about {w}" for i, w in enumerate("abcdefghij")]
             + [f"Is this review positive or negative? 'The {w} was fine.'" for w in ("soup", "room", "film", "bus", "view",
                                                                                     "bed", "game", "song", "desk", "lamp")]
             + [f"Who invented the {w}?" for w in ("telephone", "radio", "bicycle", "camera", "piano", "zipper", "laser",
                                                   "compass", "printer", "engine")])
    src = write_jsonl(tmp_path / "traffic.jsonl", [{"prompt": t} for t in texts])
    model = tmp_path / "distilled.skops"
    assert main(["taxonomy", "train", "--labels-from", f"llm:{endpoint.url}", "--unlabeled", str(src), "--out", str(model)]) == 0
    clf = UseCaseClassifier.load(model)
    assert sorted(set(clf.cv_true)) == ["Chat", "Classification", "Open QA"]  # the labeler's labels are the truth
    assert clf.predict(["User: hey\nAssistant: hi\nUser: what's up", "Is this movie positive or negative? 'Dull.'"])[0] == [
        "Chat", "Classification"]
    assert clf.shares(clf.predict(texts)[0]) is not None


def test_hf_labeler_maps_the_models_labels_to_table1(tmp_path):
    import yaml
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from builders.errors import InputError
    from taxonomy.labelers import HFLabeler
    from trainers.tiny import make_tokenizer

    tok = make_tokenizer(PROMPTS * 20, vocab_size=300)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=2, pad_token_id=tok.pad_token_id, num_labels=3,
                         id2label={0: "question", 1: "dialogue", 2: "task"}, label2id={"question": 0, "dialogue": 1, "task": 2})
    folder = tmp_path / "clf"
    LlamaForSequenceClassification(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    (folder / "table1_labels.yaml").write_text(yaml.safe_dump({"question": "Open QA", "dialogue": "Chat", "task": "Generation"}))
    labels, scores = HFLabeler(str(folder)).predict(PROMPTS)
    assert set(labels) <= {"Open QA", "Chat", "Generation"} and all(0 < s <= 1 for s in scores)
    one = tmp_path / "all_chat.yaml"
    one.write_text(yaml.safe_dump({"question": "Chat", "dialogue": "Chat", "task": "Chat"}))
    labels, scores = HFLabeler(f"{folder}#{one}").predict(PROMPTS)
    assert labels == ["Chat"] * 5 and scores == pytest.approx([1.0] * 5)  # probabilities of one use case add up
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"question": "Open QA", "dialogue": "Chit-chat"}))
    with pytest.raises(InputError, match="bad.yaml.*(unmapped|not use cases)"):
        HFLabeler(f"{folder}#{bad}")
