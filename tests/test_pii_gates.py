"""Where the PII patterns are tried: the name cues' start gate (builders/pii/prefilter.py) and the street finder's
regions (builders/pii/addresses.py) find exactly the matches their patterns find over the whole text."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest
import regex

from builders.pii import addresses, names
from builders.pii.prefilter import StartGate, Unbounded, prefixes, starts_at_word, trie

PUBLIC = Path(__file__).parent / "data" / "public"


def _spans(matches) -> list[tuple]:
    return [(m.span(), m.span("name"), m.group("title")) for m in matches]


def _public_texts() -> list[str]:
    """Texts others wrote: presidio-research's sentences, HH-RLHF dialogues and OASST messages (tests/data)."""
    texts = [r["full_text"] for r in json.loads((PUBLIC / "presidio_research_300.json").read_text(encoding="utf-8"))]
    for name in ("hh_rlhf_harmless_test_150.jsonl.gz", "hh_rlhf_helpful_test_150.jsonl.gz"):
        with gzip.open(PUBLIC / name, "rt", encoding="utf-8") as fh:
            texts += [json.loads(line)["chosen"] for line in fh]
    with open(PUBLIC / "oasst1_flat_25_trees.jsonl", encoding="utf-8") as fh:
        texts += [json.loads(line)["text"] for line in fh]
    return texts


def _random_texts(n: int, seed: int = 0) -> list[str]:
    """Texts made of the words of every cue (in lower, title and upper case), their unusual case
    variants (ſ, İ, the Kelvin sign), ordinary words, names and the separators the cues allow."""
    rng = random.Random(seed)
    # read from the cue patterns' source, not from the gate under test
    starts = sorted(set(regex.findall(r"[A-Za-z]+", names.STRONG_CUE + names.TITLE_CUE)))
    words = starts + [w.title() for w in starts] + [w.upper() for w in starts] + [
        "ſincerely", "İ", "İ'm", "\u212aid", "best", "name", "the", "to", "Anna", "Ōtani", "José", "Ng", "O'Brien",
        "dog", "12", "New", "York", "my", "late", "wife", "by", "me", "Ann-Marie", "NASA"]
    seps = [" ", " ", " ", "  ", "\t", ", ", ": ", "\n", "! ", ". ", " - ", "’", "'", ""]
    return ["".join(rng.choice(words) + rng.choice(seps) for _ in range(rng.randint(1, 30))) for _ in range(n)]


def test_the_gate_finds_every_cue_match_on_public_texts():
    texts = _public_texts()
    assert len(texts) > 500
    got = sum(len(_spans(names.CUE_NAME.finditer(t))) for t in texts)
    assert got > 50  # the texts do hold cued names
    for t in texts:
        assert _spans(names._cue_names(t)) == _spans(names.CUE_NAME.finditer(t)), t


def test_the_gate_finds_every_cue_match_on_random_cue_words():
    texts = _random_texts(3_000)
    gated = [t for t in texts if "name" not in t.lower()]  # the others are read whole (the "Name:" label cue)
    assert len(gated) > 1_000
    total = 0
    for t in texts:
        want = _spans(names.CUE_NAME.finditer(t))
        total += len(want)
        assert _spans(names._cue_names(t)) == want, t
    assert total > 1_000


@pytest.mark.parametrize("text,name", [
    ("ſincerely,\nAnna Berg", "Anna Berg"),   # ſ matches s case-insensitively
    ("İ am Tomasz.", "Tomasz"),               # İ matches i
    ("Dear \u212aarl, thanks", None),           # the Kelvin sign is no capital the name pattern takes
    ("MY WIFE Agnieszka said", "Agnieszka"),
    ("Regards,\nMr. Okafor", "Mr. Okafor"),
    ("x\u00b2Dear Anna Berg", "Anna Berg"),   # '²' is a word character to `re`, not to `regex`: a cue starts after it
])
def test_unusual_case_and_titles(text, name):
    want = _spans(names.CUE_NAME.finditer(text))
    assert _spans(names._CUE_GATE.finditer(names.CUE_NAME, text)) == want
    if name:
        assert any(text[a:b] in name or name.endswith(text[a:b]) for _, (a, b), _ in want), want


def test_prefixes_lists_what_a_match_can_start_with():
    assert prefixes(r"\b(?:hi|hey)[ \t]+x", 3, fold=True) == {"hi ", "hi\t", "hey"}
    assert prefixes(r"(?i:\bDR\.?)", 5, fold=True) == {"dr", "dr."}
    assert prefixes(r"\bDr\.?", 5, fold=False) == {"Dr", "Dr."}
    assert prefixes(r"\bco-?op", 3, fold=True) == {"co-", "coo"}
    assert prefixes(r"\b(?:ab){3}c", 2, fold=True) == {"ab"}  # settled before its third repetition
    assert prefixes(r"\b(?:a|bc){2,}", 3, fold=True) == {"aa", "aaa", "aab", "abc", "bca", "bcb"}
    with pytest.raises(Unbounded):
        prefixes(r"\b\w+name", 5, fold=True)
    with pytest.raises(Unbounded):
        prefixes(r"(?i:\bdr)", 5, fold=False)
    with pytest.raises(Unbounded):
        prefixes(r"(?i)\bdr", 5, fold=False)
    with pytest.raises(Unbounded):
        prefixes(r"\b[^x]y", 5, fold=True)


def test_only_patterns_that_start_at_a_word_are_gated():
    assert starts_at_word(r"(?i:\b(?:my|his)[ \t]+name)")
    assert not starts_at_word(r"(?:\bmy|his)")
    assert not starts_at_word(r"[ \t]+and")
    with pytest.raises(ValueError, match="inside a word"):
        StartGate(folded=[r"\bmy|x"])
    with pytest.raises(ValueError, match="no word character"):
        StartGate(folded=[r"\b,x"])


def test_the_trie_matches_exactly_its_strings():
    strings = ["hi", "hiya", "hey", "tell", "to:", "to :", "i'm"]
    pattern = regex.compile(f"(?:{trie(strings)})")
    for s in strings:
        assert pattern.fullmatch(s), s
    for s in ["h", "hiy", "he", "tel", "to", "i'", "hello"]:
        assert not pattern.fullmatch(s), s


def _random_address_texts(n: int, seed: int = 0) -> list[str]:
    """Texts of numbers, street words, capitalised and ordinary words, on one line or several."""
    rng = random.Random(seed)
    words = (["12", "4759", "7b", "221B", "12/3", "1945", "3,5", "05", "٣٢"] + addresses.STREET_PREFIXES[:40]
             + addresses.USPS_SUFFIXES[::25] + addresses.STREET_STEMS[:10] + ["Kiannonkatu", "Schachterlweg", "Roma",
             "Rebecca", "Gully", "Via", "Calle", "de", "Nydia", "Ribes", "Kálmán", "Imre", "u.", "út", "the", "dogs",
             "and", "Apt", "Suite", "Flat", "Box", "PO", "Street", "main", "st", "Park", "July", "PM", "Ōtani"])
    seps = [" ", " ", " ", "  ", "\t", ", ", "\n", ". ", "(", ""]
    return ["".join(rng.choice(words) + rng.choice(seps) for _ in range(rng.randint(1, 40))) for _ in range(n)]


def test_streets_are_found_where_the_whole_pattern_finds_them():
    texts = _public_texts() + _random_address_texts(3_000)
    total = 0
    for t in texts:
        want = [m.span() for m in addresses.STREET.finditer(t)]
        total += len(want)
        assert [m.span() for m in addresses._streets(t)] == want, t
    assert total > 1_000
