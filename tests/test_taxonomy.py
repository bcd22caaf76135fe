"""The use-case taxonomy: clear cases, the tie-break rules, the shipped labeled data (use-case shares: test_use_case_shares.py)."""

from __future__ import annotations

import json

import pytest

from taxonomy.categories import CATEGORIES, PAPER_SHARES
from tests.conftest import needs_full_data

PASSAGE = ("The Amazon rainforest spans nine countries and covers about 5.5 million square kilometres. It is home to "
           "around ten percent of known species, and cattle ranching has cleared roughly seventeen percent of it since 1970.")

CLEAR = {
    "Generation": "Write a short story about a dragon who is afraid of the dark.",
    "Open QA": "Who painted the ceiling of the Sistine Chapel?",
    "Brainstorming": "Give me 10 ideas for a birthday party for my 8 year old.",
    "Chat": "The following is a conversation with an AI assistant.\nHuman: Hi, who are you?\nAI: I'm an assistant.\nHuman: What can you do?\nAI:",
    "Rewrite": "Translate this sentence to French: I would like a cup of coffee, please.",
    "Summarization": f"Summarize this for a second-grade student:\n\n{PASSAGE}",
    "Classification": "Classify the sentiment of this review as positive or negative: \"The hotel was dirty and the staff were rude.\"",
    "Other": "start with where",
    "Closed QA": "Answer the following question: What shape is the earth? A) A circle B) A sphere C) An ellipse D) A plane",
    "Extract": f"Extract all place names from the article below:\n\n{PASSAGE}",
}


@pytest.mark.parametrize("category", CATEGORIES)
def test_each_category_is_recognised_on_a_clear_case(classifier, category):
    labels, scores = classifier.predict([CLEAR[category]])
    assert labels == [category] and 0 < scores[0] <= 1


@pytest.mark.parametrize("ask, category", [
    ("Based on the passage above, how many countries does the rainforest span?", "Closed QA"),
    ("Extract every number mentioned in the text above.", "Extract"),
    ("Summarize the text above in one sentence.", "Summarization"),
    ("Translate the text above into Spanish.", "Rewrite"),
])
def test_tie_breaks_for_a_given_passage(classifier, ask, category):
    """The same passage: a question about it is Closed QA, pulling items is Extract, condensing is Summarization,
    changing its form is Rewrite."""
    labels, _ = classifier.predict([f"{PASSAGE}\n\n{ask}"])
    assert labels == [category]


def test_shipped_labels_cover_every_category_and_the_paper_shares_sum_to_one():
    from taxonomy.model import LABELED, read_labels

    _, labels = read_labels(LABELED)
    assert all(labels.count(c) >= 25 for c in CATEGORIES)
    assert sum(PAPER_SHARES.values()) == pytest.approx(1.0, abs=0.002)  # the paper's rounded percentages


@needs_full_data
@pytest.mark.slow
def test_shipped_model_is_what_the_shipped_labels_train(shared, tmp_path):
    """`taxonomy/model/usecase.skops` is reproduced by `taxonomy train --default` from the written set and the
    hand-labeled real prompts: same predictions on the held-out prompts and the same cross-validated labels."""
    from instructkit.cli import main
    from taxonomy.heldout import load_heldout
    from taxonomy.model import SHIPPED, UseCaseClassifier

    out = tmp_path / "again.skops"
    assert main(["taxonomy", "train", "--default", "--data-dir", str(shared), "--out", str(out)]) == 0
    again, shipped = UseCaseClassifier.load(out), UseCaseClassifier.load(SHIPPED["fast"])
    texts, _ = load_heldout(shared)
    same = sum(a == b for a, b in zip(again.predict(texts)[0], shipped.predict(texts)[0]))
    assert same >= len(texts) - 1  # a float tie on another BLAS may flip one
    # written, written shapes, real, real transcripts, the second round's training part
    assert len(again.cv_true) == len(shipped.cv_true) == 591 + 248 + 746 + 80 + 1542


@needs_full_data
@pytest.mark.parametrize("model, floor", [("fast", 0.70), ("embed", 0.80)])
def test_shipped_models_on_the_held_out_real_prompts(shared, model, floor):
    """The measured held-out macro-F1 (docs/taxonomy.md: 0.76 fast, 0.83 embed) does not regress. The floors leave
    room for one flipped prediction in a 3-5 prompt class (about 0.03), e.g. MiniLM on another CPU."""
    from taxonomy.heldout import load_heldout
    from taxonomy.model import load_default, scores

    texts, labels = load_heldout(shared)
    assert scores(labels, load_default(model).predict(texts)[0])["macro_f1"] >= floor


def test_real_prompt_references_are_checked(shared, tmp_path):
    from builders.errors import InputError
    from taxonomy.heldout import load_refs

    bad_source = tmp_path / "a.jsonl"
    bad_source.write_text('{"source": "reddit", "id": "1", "label": "Chat"}\n')
    with pytest.raises(InputError, match=r"a\.jsonl:1: field 'source'"):
        load_refs(bad_source, shared)
    missing = tmp_path / "b.jsonl"
    missing.write_text('{"source": "hh_helpful_test", "id": "0", "label": "Open QA"}\n'
                       '{"source": "hh_helpful_test", "id": "999999", "label": "Open QA"}\n')
    with pytest.raises(InputError, match=r"b\.jsonl:2: field 'id'"):
        load_refs(missing, shared)
    with pytest.raises(InputError, match="--data-dir"):
        load_refs(missing, tmp_path)


@needs_full_data
def test_real_training_prompts_never_overlap_the_held_out_tests(shared):
    from taxonomy.heldout import REAL_SHAPES, load_heldout, load_real_labeled
    from taxonomy.model import default_training_set

    real, _ = load_real_labeled(shared)
    assert len(load_real_labeled(shared, REAL_SHAPES)[0]) == 80
    train = set(default_training_set(shared)[0])
    sets = {name: set(load_heldout(shared, name)[0]) for name in ("oasst", "mixed", "followups", "shapes", "large")}
    assert (len(real), *map(len, sets.values())) == (746, 167, 200, 73, 80, 1443)
    assert not any(train & s for s in sets.values())
    assert all(not sets[a] & sets[b] for a in sets for b in sets if a < b)


@pytest.mark.parametrize("text", [
    "Human: hi\nAssistant: hello\nHuman: how are you?",
    "user - hey\nbot - hi there\nuser - what's up",
    "[USER]: can you help\n[ASSISTANT]: sure\n[USER]: thanks",
    "### Human: cats or dogs?\n### Assistant: both!\n### Human: pick one",
    "Q: are you real\nA: I'm a program\nQ: do you sleep",
    "human: tell me a joke assistant: why did the chicken... human: another",  # turns on one line
    "> hey\n< hi\n> you there?",
])
def test_transcripts_in_any_format_are_seen_and_labeled_chat(classifier, text):
    from taxonomy.features import structure_features

    assert structure_features([text])[0, 13] == 1.0
    assert classifier.predict([text])[0] == ["Chat"]


def test_a_single_question_or_a_colon_is_no_transcript():
    from taxonomy.features import speaker_turns

    for text in ("Note: the meeting moved. Question: when is it now?", "Why is the sky blue?", "Ingredients: flour, eggs"):
        turns, speakers = speaker_turns(text)
        assert not (turns >= 3 and speakers >= 2), text


def test_written_shapes_held_out_from_training(classifier):
    """Prompts in the shapes Table 1 names, written apart from the training ones and never trained on: the
    transcripts, "given X, decide Y" tasks, word problems, passages with questions (the 50 written rows of
    heldout_shapes.jsonl; its 30 HH-RLHF transcripts need the public data)."""
    import json

    from taxonomy.heldout import HELDOUT_SETS
    from taxonomy.model import scores

    rows = [json.loads(line) for line in HELDOUT_SETS["shapes"].read_text().splitlines()]
    written = [r for r in rows if "text" in r]
    res = scores([r["label"] for r in written], classifier.predict([r["text"] for r in written])[0])
    assert len(written) == 50 and res["macro_f1"] >= 0.8
    assert res["per_class_f1"]["Classification"] >= 0.75 and res["per_class_f1"]["Chat"] >= 0.8


@needs_full_data
@pytest.mark.parametrize("params", [dict(ngram_range=(2, 4), sublinear_tf=True, min_df=2, max_features=30000),
                                    dict(ngram_range=(1, 3)), dict(ngram_range=(3, 5), lowercase=False)])
def test_word_cached_char_ngrams_give_scikit_learns_matrix(shared, params):
    """CharTfidf (the classifier's fast char n-grams) is TfidfVectorizer(analyzer="char_wb") to the last bit, on
    real prompts and on odd whitespace, case and short words; its cache is not part of a saved model."""
    import pickle

    from sklearn.feature_extraction.text import TfidfVectorizer

    from taxonomy.features import CharTfidf
    from taxonomy.heldout import REAL_LABELED, load_refs

    texts, _ = load_refs(REAL_LABELED, shared)
    odd = ["", "   ", "a", "ab", "ÄÖÜ STRAẞE\u00a0nbsp\ttab\n\nnew", "x\x1cy\u2028z", "İstanbul ǅ", "a  b   c", "emoji 😀😀 ok"]
    ours, theirs = CharTfidf(analyzer="char_wb", **params).fit(texts[:300]), TfidfVectorizer(analyzer="char_wb", **params).fit(texts[:300])
    docs = texts + odd
    expected = theirs.transform(docs)
    for _ in range(2):  # a cold, then a warm word cache
        got = ours.transform(docs)
        assert (got.indptr == expected.indptr).all() and (got.indices == expected.indices).all() and (got.data == expected.data).all()
    assert "_word_cache" in ours.__dict__ and "_word_cache" not in pickle.loads(pickle.dumps(ours)).__dict__


@needs_full_data
def test_a_second_blind_labeling_of_the_mixed_set_agrees_with_the_first(shared):
    """docs/taxonomy.md reads the models' scores against how well the labels agree with themselves: the second
    held-out set labeled again, blind, from the written rules (`heldout_mixed_second_pass.jsonl`): 0.92 macro-F1."""
    from taxonomy.heldout import DATA, HELDOUT_SETS, load_refs
    from taxonomy.model import scores

    texts, first = load_refs(HELDOUT_SETS["mixed"], shared)
    again, second = load_refs(DATA / "heldout_mixed_second_pass.jsonl", shared)
    assert again == texts and scores(first, second)["macro_f1"] >= 0.9


def test_per_class_f1_intervals_hold_the_point_and_are_exact_when_every_prediction_is_right():
    from taxonomy.bench import f1_intervals

    labels = ["Chat"] * 20 + ["Open QA"] * 30 + ["Rewrite"] * 10
    right = f1_intervals(labels, labels, n_boot=200)
    assert right["macro-F1"] == {"f1": 1.0, "ci95": [1.0, 1.0], "support": 60}
    noisy = labels[:]
    noisy[:5] = ["Open QA"] * 5  # five Chat prompts taken for Open QA
    res = f1_intervals(labels, noisy, n_boot=200)
    assert res["Chat"]["support"] == 20 and res["Chat"]["f1"] == round(2 * 15 / (2 * 15 + 5), 3)
    assert all(v["ci95"][0] <= v["f1"] <= v["ci95"][1] for v in res.values()) and res["Rewrite"]["f1"] == 1.0


@needs_full_data
def test_the_second_round_was_labeled_twice_and_the_labelings_agree(shared):
    """Every prompt of the second round carries two independent labels; docs/taxonomy.md reports their agreement
    (Cohen's kappa 0.86 over the 3,000 labeled; 15 held-out rows whose text is also a training prompt's or another held-out set's were left
    out) and the settled label is theirs wherever they agree."""
    from sklearn.metrics import cohen_kappa_score

    from taxonomy.heldout import HELDOUT_SETS, REAL_LABELED_2, load_refs

    rows = [json.loads(line) for f in (REAL_LABELED_2, HELDOUT_SETS["large"]) for line in f.read_text().splitlines()]
    assert len(rows) == 2985 and len({(r["source"], r["id"]) for r in rows}) == 2985
    assert cohen_kappa_score([r["first"] for r in rows], [r["second"] for r in rows]) >= 0.85
    assert all(r["label"] == r["first"] for r in rows if r["first"] == r["second"])
    assert {r["source"] for r in rows[:1542]}.isdisjoint({"hh_helpful_test", "truthfulqa_v0", "rtp_toxic"})
    texts, labels = load_refs(REAL_LABELED_2, shared)
    assert len(texts) == 1542 and all(t.strip() for t in texts)
