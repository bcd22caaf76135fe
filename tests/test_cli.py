"""The `instructkit` command as a user runs it."""

from __future__ import annotations

import json
import pickle

import polars as pl
import pytest

from instructkit.cli import main
from tests.conftest import write_jsonl
from tests.conftest import needs_full_data


def test_build_cli_prints_a_summary_and_reads_a_yaml_config(tmp_path, capsys, shared):
    cfg = tmp_path / "build.yaml"
    cfg.write_text(f"source: oasst:{shared / 'oasst1_en_validation' / 'oasst1_en_validation.jsonl'}\n"
                   "cap-per-user: 1\nsplit_ratios: {{train: 0.6, validation: 0.2, test: 0.2}}\n".replace("{{", "{").replace("}}", "}"))
    assert main(["build", "--config", str(cfg), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "cap_per_user" in text and "accounted for" in text
    report = json.loads((tmp_path / "out" / "build_report.json").read_text())
    assert report["settings"]["cap_per_user"] == 1
    assert report["stages"][2]["dropped"].get("over_1_prompts_per_user", 0) > 0


def test_build_cli_bad_input_exits_2_with_file_line_field(tmp_path, capsys):
    f = write_jsonl(tmp_path / "p.jsonl", [{"prompt_id": "a", "user_id": "u", "source": "api", "text": "ok"},
                                           {"prompt_id": "b", "user_id": "u", "source": "api"}])
    assert main(["build", "--source", f"jsonl:{f}", "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert f"{f}:2: field 'text'" in capsys.readouterr().err


def test_unknown_config_key_is_named(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("dedup_treshold: 0.5\n")
    assert main(["build", "--config", str(cfg)]) == 2
    assert "field 'dedup_treshold': unknown setting" in capsys.readouterr().err


def test_classify_adds_category_and_score(tmp_path):
    rows = [{"text": "Write a short poem about the sea."}, {"prompt": "Who wrote Hamlet?"},
            {"messages": [{"role": "user", "content": "List 10 gift ideas for my dad."}]}]
    out = tmp_path / "out.parquet"
    assert main(["classify", "--in", str(write_jsonl(tmp_path / "in.jsonl", rows)), "--out", str(out)]) == 0
    df = pl.read_parquet(out)
    assert df["category"].to_list() == ["Generation", "Open QA", "Brainstorming"]
    assert ((df["category_score"] > 0) & (df["category_score"] <= 1)).all()


def test_pii_command_redacts_and_drops(tmp_path):
    rows = [{"id": 1, "text": "Email me at jo@example.com"}, {"id": 2, "text": "Who was George Washington?"}]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    assert main(["pii", "--in", str(src), "--out", str(tmp_path / "r.jsonl")]) == 0
    red = [json.loads(line) for line in open(tmp_path / "r.jsonl")]
    assert [r["text"] for r in red] == ["Email me at <EMAIL_ADDRESS>", "Who was <PERSON>?"]  # names: all by default
    assert main(["pii", "--in", str(src), "--out", str(tmp_path / "p.jsonl"), "--names", "personal"]) == 0
    assert [json.loads(line)["text"] for line in open(tmp_path / "p.jsonl")][1] == "Who was George Washington?"
    assert main(["pii", "--in", str(src), "--out", str(tmp_path / "d.jsonl"), "--mode", "drop", "--names", "personal"]) == 0
    assert [json.loads(line)["id"] for line in open(tmp_path / "d.jsonl")] == [2]


def test_taxonomy_retrains_on_user_labels_and_evaluates(tmp_path, capsys):
    rows = [{"text": f"Translate to French: sentence number {i}", "label": "Rewrite"} for i in range(8)]
    rows += [{"text": f"Who was king of country number {i}?", "label": "Open QA"} for i in range(8)]
    labels = write_jsonl(tmp_path / "labels.jsonl", rows)
    model = tmp_path / "mine.skops"
    assert main(["taxonomy", "train", "--labels", str(labels), "--out", str(model)]) == 0
    assert main(["classify", "--in", str(write_jsonl(tmp_path / "q.jsonl", [{"text": "Translate to French: good night"}])),
                 "--out", str(tmp_path / "o.jsonl"), "--model", str(model)]) == 0
    assert json.loads(open(tmp_path / "o.jsonl").readline())["category"] == "Rewrite"
    assert main(["taxonomy", "eval", "--labels", str(labels), "--model", str(model), "--json", str(tmp_path / "m.json")]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["macro_f1"] == 1.0


def test_taxonomy_labels_with_unknown_category_name_the_row(tmp_path, capsys):
    labels = tmp_path / "l.csv"
    labels.write_text("text,label\nhello,Chat\nbye,Smalltalk\n")
    assert main(["taxonomy", "train", "--labels", str(labels), "--out", str(tmp_path / "m.skops")]) == 2
    assert "l.csv:3: field 'label': unknown label 'Smalltalk'" in capsys.readouterr().err


def test_a_model_file_that_is_not_skops_is_refused(tmp_path, capsys):
    evil = tmp_path / "model.skops"
    evil.write_bytes(pickle.dumps({"not": "a skops file"}))
    assert main(["classify", "--in", str(write_jsonl(tmp_path / "q.jsonl", [{"text": "hi"}])), "--out", str(tmp_path / "o.jsonl"),
                 "--model", str(evil)]) == 2
    assert "not a skops model file" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()


@needs_full_data
def test_heldout_real_prompts_resolve_and_are_scored(shared, tmp_path, capsys):
    from taxonomy.heldout import load_heldout

    texts, labels = load_heldout(shared)
    assert len(texts) == len(labels) == 167 and all(t.strip() for t in texts)
    assert main(["taxonomy", "eval", "--heldout", "--data-dir", str(shared), "--json", str(tmp_path / "h.json")]) == 0
    res = json.loads((tmp_path / "h.json").read_text())
    assert res["n"] == 167 and set(res["per_class_f1"]) >= set(labels)


def test_an_unknown_classifier_name_is_a_clear_error(tmp_path, capsys):
    prompts = write_jsonl(tmp_path / "q.jsonl", [{"text": "hi"}])
    assert main(["classify", "--in", str(prompts), "--out", str(tmp_path / "o.jsonl"), "--model", "embd"]) == 2
    err = capsys.readouterr().err
    assert "'embd' is neither a shipped model (fast, embed), an existing skops file" in err
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.slow
def test_a_fine_tuned_model_learns_user_labels_and_reloads_the_same(tmp_path):
    """`taxonomy train --features tuned` fine-tunes MiniLM on a user's labels: unseen prompts of the labeled kinds
    come out right, probabilities sum to one, the held-out calibration rows give error-corrected shares, and the
    skops file reloads to the same numbers."""
    from taxonomy.model import UseCaseClassifier

    topics = ["the sea", "autumn", "a lost key", "my grandmother", "the first snow", "a city at night", "coffee",
              "a broken clock", "friendship", "the moon", "an old dog", "trains", "silence", "a garden", "winter", "rain"]
    countries = ["France", "Japan", "Kenya", "Chile", "Norway", "Egypt", "India", "Canada", "Brazil", "Spain", "Italy",
                 "Mexico", "Ghana", "Poland", "Vietnam", "Ireland"]
    rows = [{"text": f"Write a short poem about {t}.", "label": "Generation"} for t in topics]
    rows += [{"text": f"What is the capital of {c}?", "label": "Open QA"} for c in countries]
    sentences = ["the shop opens at eight", "my brother lost his keys", "we are out of milk", "it rained all week",
                 "the meeting moved to Friday", "she plays the violin", "I forgot my umbrella", "the soup is too salty",
                 "our flight was delayed", "he painted the fence", "the kids are asleep", "turn left at the bank",
                 "the printer is broken", "I love this song", "call me after lunch", "the garden needs water"]
    rows += [{"text": f"Translate into German: {s}.", "label": "Rewrite"} for s in sentences]
    labels = write_jsonl(tmp_path / "labels.jsonl", rows)
    model = tmp_path / "tuned.skops"
    assert main(["taxonomy", "train", "--labels", str(labels), "--features", "tuned", "--out", str(model)]) == 0
    clf = UseCaseClassifier.load(model)
    unseen = ["Write a short poem about the desert.", "What is the capital of Peru?",
              "Translate into German: the train leaves at nine."]
    pred, scores = clf.predict(unseen)
    assert pred == ["Generation", "Open QA", "Rewrite"] and all(0 < s <= 1 for s in scores)
    assert clf.uses_torch and sorted(clf.classes) == ["Generation", "Open QA", "Rewrite"]
    assert len(clf.cv_true) == len(clf.cv_pred) > 0 and clf.shares(pred) is not None
    proba = clf.predict_proba(unseen)
    assert abs(proba.sum(axis=1) - 1).max() < 1e-9
    assert (UseCaseClassifier.load(model).predict_proba(unseen) == proba).all()


def test_tuned_fine_tunes_another_encoder_given_by_folder(tmp_path):
    """`--base` fine-tunes a different encoder (a Hub id for users with a network; here a small BERT made from a
    config): its architecture is kept in the model file, which reloads to the same probabilities without it."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from taxonomy.finetune import _base_path
    from taxonomy.model import UseCaseClassifier

    base = tmp_path / "small-bert"
    BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(base)
    AutoTokenizer.from_pretrained(_base_path(None)).save_pretrained(base)
    rows = [{"text": f"Write a poem about thing {i}.", "label": "Generation"} for i in range(10)]
    rows += [{"text": f"What is the capital of place {i}?", "label": "Open QA"} for i in range(10)]
    model = tmp_path / "small.skops"
    assert main(["taxonomy", "train", "--labels", str(write_jsonl(tmp_path / "l.jsonl", rows)), "--features", "tuned",
                 "--base", str(base), "--out", str(model)]) == 0
    texts = ["Write a poem about rain.", "What is the capital of Peru?"]
    first = UseCaseClassifier.load(model)
    proba = first.predict_proba(texts)
    assert first.pipeline.steps[-1][1].encoder_weights_["embeddings.word_embeddings.weight"].shape == (30522, 32)
    (base / "model.safetensors").unlink(missing_ok=True)  # the weights come from the model file, not the base
    assert (UseCaseClassifier.load(model).predict_proba(texts) == proba).all()


def test_too_few_labels_to_fine_tune_is_a_clear_error(tmp_path, capsys):
    labels = write_jsonl(tmp_path / "l.jsonl", [{"text": "Who is he?", "label": "Open QA"}, {"text": "Write a poem", "label": "Generation"},
                                                {"text": "What is it?", "label": "Open QA"}])
    assert main(["taxonomy", "train", "--labels", str(labels), "--features", "tuned", "--out", str(tmp_path / "m.skops")]) == 2
    assert "3 labeled rows are too few to fine-tune" in capsys.readouterr().err and not (tmp_path / "m.skops").exists()


def test_the_unshipped_tuned_model_says_how_to_train_it(tmp_path, capsys):
    prompts = write_jsonl(tmp_path / "q.jsonl", [{"text": "hi"}])
    assert main(["classify", "--in", str(prompts), "--out", str(tmp_path / "o.jsonl"), "--model", "tuned"]) == 2
    assert "taxonomy train --default --features tuned" in capsys.readouterr().err
