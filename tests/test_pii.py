"""PII: personal data is redacted or dropped; public facts are not; false positives measured on real questions."""

from __future__ import annotations

import csv

import pytest

from builders.stages.pii import redact


def clean(scanner, texts):
    return [redact(t, f) for t, f in zip(texts, scanner.scan(texts))]


def test_direct_identifiers_and_personal_names_are_redacted(scanner):
    texts = ["My name is Ada Lovelace, email ada@example.com, phone 415-555-0134.",
             "Please call my neighbour Tom Becker at (212) 555-0187 about the fence.",
             "Hi Priya! The package goes to 42 Elm Street, Springfield.",
             "Card 4111 1111 1111 1111 was charged twice; server 10.0.3.17 logged it.",
             "Regards,\nJohn Smith"]
    out = clean(scanner, texts)
    assert out[0] == "My name is <PERSON>, email <EMAIL_ADDRESS>, phone <PHONE_NUMBER>."
    assert "Tom Becker" not in out[1] and "555-0187" not in out[1]
    assert out[2] == "Hi <PERSON>! The package goes to <STREET_ADDRESS>, Springfield."
    assert "4111" not in out[3] and "10.0.3.17" not in out[3]
    assert out[4] == "Regards,\n<PERSON>"


@pytest.mark.parametrize("text", [
    "Who was the first president of the United States? Was it George Washington?",
    "Write a poem about France today.",
    "Summarize the life of Abraham Lincoln in three sentences.",
    "What did Marie Curie discover, and when did she win her Nobel Prizes?",
    "Hello World program in C, please.",
    "Dear Sir or Madam, I am writing to complain about the noise.",
])
def test_public_facts_are_not_destroyed(scanner, text):
    assert clean(scanner, [text]) == [text]


def test_false_positive_rate_on_truthfulqa_questions_is_low(scanner, shared):
    """TruthfulQA questions are public trivia with no personal data: every redaction there is a false positive."""
    with open(shared / "truthfulqa" / "TruthfulQA_v0_original.csv", encoding="utf-8") as fh:
        questions = [r["Question"] for r in csv.DictReader(fh)]
    assert len(questions) == 817
    flagged = [q for q, f in zip(questions, scanner.scan(questions)) if f]
    assert len(flagged) / len(questions) <= 0.02, flagged[:10]
