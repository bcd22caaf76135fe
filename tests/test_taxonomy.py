"""The use-case taxonomy: clear cases, the tie-break rules, error-corrected shares, the shipped labeled data."""

from __future__ import annotations

import pytest

from taxonomy.categories import CATEGORIES, PAPER_SHARES
from taxonomy.distribution import adjusted_shares

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


def test_adjusted_shares_undo_a_known_confusion():
    classes = ["A", "B"]
    # the classifier calls half of the true A items B, and B items always B
    cv_true = ["A"] * 400 + ["B"] * 400
    cv_pred = ["A"] * 200 + ["B"] * 200 + ["B"] * 400
    true = ["A"] * 600 + ["B"] * 400
    pred = [("A" if i % 2 else "B") if t == "A" else "B" for i, t in enumerate(true)]
    res = adjusted_shares(pred, cv_true, cv_pred, classes=classes, n_boot=200)
    assert res["A"]["raw_share"] < 0.35  # naive counting sees about 30% A
    assert res["A"]["share"] == pytest.approx(0.6, abs=0.05)
    lo, hi = res["A"]["ci95"]
    assert lo <= 0.6 <= hi and sum(v["share"] for v in res.values()) == pytest.approx(1.0, abs=1e-3)


def test_shipped_labels_cover_every_category_and_the_paper_shares_sum_to_one():
    from taxonomy.model import LABELED, read_labels

    _, labels = read_labels(LABELED)
    assert all(labels.count(c) >= 25 for c in CATEGORIES)
    assert sum(PAPER_SHARES.values()) == pytest.approx(1.0, abs=0.002)  # the paper's rounded percentages


def test_build_report_carries_error_corrected_shares(sample_build):
    _, report = sample_build
    adj = report["use_cases"]["api_prompts_adjusted"]
    assert set(adj) == set(CATEGORIES) and sum(v["share"] for v in adj.values()) == pytest.approx(1.0, abs=1e-3)
    assert all(v["ci95"][0] <= v["share"] <= v["ci95"][1] for v in adj.values())


def test_default_model_is_cached_and_reloads_with_the_same_predictions(classifier):
    import taxonomy.model as tm

    path = tm._cache_path()
    assert path.exists()
    again = tm.UseCaseClassifier.load(path)
    texts = list(CLEAR.values())
    assert again.predict(texts) == classifier.predict(texts) and again.cv_pred == classifier.cv_pred
