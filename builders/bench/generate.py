"""A deterministic synthetic prompt log in the canonical schema, built from real text, with known truth.

Prompts are real texts (the embedded sample, the taxonomy's labeled set and, when present, oasst1 prompts,
HH-RLHF first turns, TruthfulQA questions and RealToxicityPrompts openings) and, once those run out, splices of
word windows taken from several of them. Users are Zipf-distributed (the heaviest far above the 200 cap).
Duplicates of earlier prompts and personal data are injected at known rates; the truth file says which rows
are duplicates of which, how (and the true Jaccard of their prefixes), and which personal values each holds.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from builders.errors import InputError
from builders.stages.dedup import shingles

SAMPLE = Path(__file__).resolve().parent.parent / "sample"
LABELED = Path(__file__).resolve().parent.parent.parent / "taxonomy" / "data" / "labeled.jsonl"
DUP_KINDS = ("exact", "format", "tail", "edit")
PII_KINDS = ("PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IP_ADDRESS", "STREET_ADDRESS")

FIRST = ["Maria", "James", "Priya", "Wei", "Fatima", "Lukas", "Aisha", "Carlos", "Olivia", "Kenji", "Sofia", "Daniel",
         "Amara", "Mateo", "Hannah", "Ravi", "Elena", "Tomasz", "Grace", "Omar", "Chloe", "Ivan", "Leila", "Samuel",
         "Ingrid", "Diego", "Naomi", "Arjun", "Zoe", "Kwame", "Isabel", "Henrik", "Mei", "Andre", "Lucy", "Yusuf"]
LAST = ["Gonzalez", "Smith", "Patel", "Chen", "Haddad", "Schneider", "Okafor", "Rivera", "Johnson", "Tanaka",
        "Rossi", "Kowalski", "Nguyen", "Murphy", "Silva", "Ivanova", "Andersson", "Mensah", "Fischer", "Kim",
        "Moreau", "Novak", "Hughes", "Sato", "Petrov", "Lindqvist", "Alvarez", "Brennan", "Costa", "Weber"]
STREETS = ["Maple", "Oak", "Cedar", "Elm", "Willow", "Harbor", "Sunset", "Lincoln", "Highland", "Park", "River", "Chestnut"]
SUFFIXES = ["Street", "Avenue", "Road", "Lane", "Drive", "Boulevard"]
# real US area codes: phone recognizers (presidio's uses the phonenumbers library) rightly reject invalid ones
AREA_CODES = [212, 213, 214, 206, 305, 312, 303, 404, 415, 503, 512, 602, 617, 646, 702, 713, 718, 773, 801, 818, 917, 919]
DOMAINS = ["gmail.com", "outlook.com", "yahoo.com", "proton.me", "example.org", "fastmail.com"]
# (template, where): where is "start", "end" or "any"
TEMPLATES = {
    "PERSON": [("My name is {v}.", "start"), ("Dear {v},", "start"), ("Regards, {v}", "end"),
               ("Please forward this to my colleague {v}.", "end"), ("Hi, I'm {v}.", "start")],
    "EMAIL_ADDRESS": [("Email me at {v}.", "end"), ("Contact: {v}", "end"), ("Send the answer to {v} please.", "any")],
    "PHONE_NUMBER": [("Call me at {v}.", "end"), ("My number is {v}.", "any")],
    "CREDIT_CARD": [("My card number is {v}.", "any"), ("Charge it to card {v}.", "end")],
    "US_SSN": [("My SSN is {v}.", "any"), ("SSN: {v}", "end")],
    "IP_ADDRESS": [("The server is at {v}.", "any"), ("My home IP is {v}.", "end")],
    "STREET_ADDRESS": [("I live at {v}.", "any"), ("Ship it to {v}.", "end")],
}


@dataclass
class GenSettings:
    n: int
    seed: int = 0
    dup_rate: float = 0.15
    pii_rate: float = 0.05
    users_per_prompt: float = 0.125  # about 8 prompts per user on average, Zipf-skewed
    zipf_s: float = 1.1
    labeler_user_share: float = 0.1
    demo_rate: float = 0.05
    ranking_rate: float = 0.05


def _read_jsonl(path: Path):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def real_texts(data_dir: Path | None) -> tuple[list[str], list[str]]:
    """(prompt texts, reply texts) from real data, distinct and in a fixed order."""
    prompts, replies = [], []
    prompts += [r["text"] for r in _read_jsonl(SAMPLE / "prompts.jsonl") if r.get("text")]
    prompts += [r["text"] for r in _read_jsonl(LABELED)]
    replies += [r["completion"] for r in _read_jsonl(SAMPLE / "demonstrations.jsonl")]
    if data_dir is not None and data_dir.exists():
        oasst = data_dir / "oasst1_en_validation" / "oasst1_en_validation.jsonl"
        if oasst.exists():
            for r in _read_jsonl(oasst):
                (prompts if r["role"] == "prompter" else replies).append(r["text"])
        for sub in ("helpful-base", "harmless-base"):
            f = data_dir / "hh_rlhf" / sub / "test.jsonl.gz"
            if f.exists():
                for r in _read_jsonl(f):
                    parts = r["chosen"].split("\n\nAssistant: ")
                    prompts.append(parts[0].replace("\n\nHuman: ", "", 1))
                    replies.append(parts[-1])
        tqa = data_dir / "truthfulqa" / "TruthfulQA_v0_original.csv"
        if tqa.exists():
            with open(tqa, newline="", encoding="utf-8") as fh:
                prompts += [r["Question"] for r in csv.DictReader(fh)]
        rtp = data_dir / "realtoxicityprompts_decodingtrust" / "nontoxic.jsonl"
        if rtp.exists():
            prompts += [r["prompt"]["text"] for r in _read_jsonl(rtp)]
    clean = lambda xs: list(dict.fromkeys(" ".join(x.split()) for x in xs if x and len(x.strip()) >= 12))  # noqa: E731
    return clean(prompts), clean(replies)


def _norm_prefix(text: str, chars: int = 200) -> str:
    return " ".join(text.lower().split())[:chars]


def prefix_jaccard(a: str, b: str, k: int = 3, chars: int = 200) -> float:
    sa, sb = set(shingles(_norm_prefix(a, chars), k)), set(shingles(_norm_prefix(b, chars), k))
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


class _Maker:
    def __init__(self, prompts: list[str], rng: np.random.Generator):
        self.prompts, self.rng = prompts, rng
        self.words = [p.split() for p in prompts]
        self.order = rng.permutation(len(prompts))
        self.used = 0
        self.seen: set[int] = set()  # 64-bit digests of the prefixes used: a set of the prefixes was GBs at 10M

    def splice(self) -> str:
        """3-6 windows of 5-14 words from different real prompts."""
        parts = []
        for j in self.rng.choice(len(self.words), size=int(self.rng.integers(3, 7)), replace=False):
            w = self.words[j]
            size = int(self.rng.integers(5, 15))
            start = int(self.rng.integers(0, max(1, len(w) - size + 1)))
            parts.append(" ".join(w[start : start + size]))
        text = " ".join(parts)
        return text[0].upper() + text[1:]

    def new_prompt(self) -> str:
        while True:
            if self.used < len(self.order):
                text = self.prompts[self.order[self.used]]
                self.used += 1
            else:
                text = self.splice()
            key = int.from_bytes(hashlib.blake2b(_norm_prefix(text).encode("utf-8"), digest_size=8).digest(), "big")
            if key not in self.seen:  # distinct prefixes: the only duplicates are the injected ones
                self.seen.add(key)
                return text

    def duplicate(self, text: str, kind: str) -> str | None:
        rng = self.rng
        if kind == "exact":
            return text
        if kind == "format":
            variants = [text.lower(), text.upper(), "  " + text.replace(" ", "  ") + "\n", text + " \n"]
            return variants[int(rng.integers(len(variants)))]
        if kind == "tail":  # same long prefix, different ending (a template re-used with new content)
            if len(text) < 240:
                return None
            return text[:220] + " " + self.splice()
        words = text.split()
        # one word changed near the end of the compared prefix, in prompts long enough to stay above the threshold
        upto = len(_norm_prefix(text).split())
        if upto < 25:
            return None
        j = int(rng.integers(upto - 5, upto - 1))
        words[j] = self.words[int(rng.integers(len(self.words)))][0]
        return " ".join(words)

    def pii(self, kind: str) -> str:
        rng = self.rng
        first, last = FIRST[int(rng.integers(len(FIRST)))], LAST[int(rng.integers(len(LAST)))]
        if kind == "PERSON":
            return f"{first} {last}"
        if kind == "EMAIL_ADDRESS":
            return f"{first.lower()}.{last.lower()}{int(rng.integers(1, 999))}@{DOMAINS[int(rng.integers(len(DOMAINS)))]}"
        if kind == "PHONE_NUMBER":
            a, b, c = AREA_CODES[int(rng.integers(len(AREA_CODES)))], int(rng.integers(201, 999)), int(rng.integers(0, 10000))
            return [f"({a}) {b}-{c:04d}", f"{a}-{b}-{c:04d}", f"+1 {a} {b} {c:04d}"][int(rng.integers(3))]
        if kind == "CREDIT_CARD":
            digits = [4] + [int(d) for d in rng.integers(0, 10, size=14)]
            total = sum(d if i % 2 else (d * 2 - 9 if d * 2 > 9 else d * 2) for i, d in enumerate(digits))
            digits.append((10 - total % 10) % 10)  # Luhn check digit
            s = "".join(map(str, digits))
            return " ".join(s[i : i + 4] for i in range(0, 16, 4))
        if kind == "US_SSN":
            return f"{int(rng.integers(101, 665)):03d}-{int(rng.integers(10, 99)):02d}-{int(rng.integers(1000, 9999)):04d}"
        if kind == "IP_ADDRESS":
            return f"{int(rng.integers(11, 200))}.{int(rng.integers(0, 255))}.{int(rng.integers(0, 255))}.{int(rng.integers(1, 254))}"
        return f"{int(rng.integers(2, 9999))} {STREETS[int(rng.integers(len(STREETS)))]} {SUFFIXES[int(rng.integers(len(SUFFIXES)))]}"

    def inject(self, text: str, kind: str) -> tuple[str, str]:
        value = self.pii(kind)
        template, where = TEMPLATES[kind][int(self.rng.integers(len(TEMPLATES[kind])))]
        piece = template.format(v=value)
        at_start = where == "start" or (where == "any" and self.rng.random() < 0.4)
        return (f"{piece} {text}" if at_start else f"{text} {piece}"), value


PROMPTS_SCHEMA = pa.schema([("prompt_id", pa.string()), ("user_id", pa.string()), ("source", pa.string()),
                            ("prompt_type", pa.string()), ("text", pa.string()), ("created_at", pa.timestamp("us", tz="UTC")),
                            ("lang", pa.string())])
DEMOS_SCHEMA = pa.schema([("prompt_id", pa.string()), ("labeler_id", pa.string()), ("completion", pa.string())])
RANKINGS_SCHEMA = pa.schema([("prompt_id", pa.string()), ("labeler_id", pa.string()), ("completions", pa.list_(pa.string())),
                             ("ranks", pa.list_(pa.int64()))])
TRUTH_SCHEMA = pa.schema([("prompt_id", pa.string()), ("dup_of", pa.string()), ("dup_kind", pa.string()),
                          ("prefix_jaccard", pa.float64()), ("pii_kind", pa.string()), ("pii_value", pa.string())])


class _TableWriter:
    """One output table written a part at a time: Parquet row groups, or JSONL lines."""

    def __init__(self, path: Path, schema: pa.Schema, rows_per_part: int):
        self.path, self.schema, self.rows_per_part = path, schema, rows_per_part
        self.jsonl = path.suffix == ".jsonl"
        self.cols: dict[str, list] = {name: [] for name in schema.names}
        self.rows = 0
        self.fh = open(path, "w", encoding="utf-8") if self.jsonl else pq.ParquetWriter(path, schema, compression="zstd")

    def add(self, *values) -> None:
        for col, v in zip(self.cols.values(), values):
            col.append(v)
        if len(next(iter(self.cols.values()))) >= self.rows_per_part:
            self.flush()

    def flush(self) -> None:
        table = pa.table(self.cols, schema=self.schema)
        self.rows += table.num_rows
        for col in self.cols.values():
            col.clear()
        if not self.jsonl:
            self.fh.write_table(table)
            return
        for row in table.to_pylist():
            if isinstance(row.get("created_at"), datetime):
                row["created_at"] = row["created_at"].isoformat()
            self.fh.write(json.dumps(row, ensure_ascii=False) + "\n")

    def close(self) -> int:
        if len(next(iter(self.cols.values()))) or (not self.rows and not self.jsonl):
            self.flush()  # the last part; a Parquet file with no rows still gets its schema
        self.fh.close()
        return self.rows


class _Texts:
    """Every generated prompt's text, for the duplicates that re-submit an earlier one: the current part in memory,
    the rest in a file beside the log (read back by offset), so a log of 10M prompts never holds its texts."""

    def __init__(self, path: Path, n: int, part: int):
        self.path, self.part = path, part
        self.fh = open(path, "w+b")
        self.offsets = np.zeros(n + 1, dtype=np.int64)
        self.recent: list[bytes] = []
        self.on_disk = 0  # texts [0, on_disk) are in the file

    def append(self, text: str) -> None:
        data = text.encode("utf-8")
        i = self.on_disk + len(self.recent)
        self.offsets[i + 1] = self.offsets[i] + len(data)
        self.recent.append(data)
        if len(self.recent) >= self.part:
            self.fh.write(b"".join(self.recent))
            self.fh.flush()
            self.on_disk += len(self.recent)
            self.recent.clear()

    def __getitem__(self, i: int) -> str:
        if i >= self.on_disk:
            return self.recent[i - self.on_disk].decode("utf-8")
        return os.pread(self.fh.fileno(), int(self.offsets[i + 1] - self.offsets[i]), int(self.offsets[i])).decode("utf-8")

    def close(self) -> None:
        self.fh.close()
        self.path.unlink()


def generate(settings: GenSettings, data_dir: Path | None, out: Path, *, rows_per_part: int = 100_000) -> dict:
    """Write the log to the folder `out`: prompts, demonstrations and rankings (canonical schema, read by
    `--source parquet:OUT` or `jsonl:OUT`; `*.jsonl` folders get JSONL) and truth/truth.parquet. Streams: rows go
    to disk a part of `rows_per_part` at a time and earlier texts are read back from disk, so memory holds a few
    numbers a prompt (10M prompts: about 0.3 KB each), never the log. Returns the counts and the paths."""
    if settings.n < 1:
        raise InputError("must be at least 1", field="n")
    out.mkdir(parents=True, exist_ok=True)
    (out / "truth").mkdir(exist_ok=True)  # a subfolder, so `--source parquet:OUT` reads only the log
    fmt = "jsonl" if out.name.endswith(".jsonl") else "parquet"
    paths = {name: out / f"{name}.{fmt}" for name in ("prompts", "demonstrations", "rankings")} | {"truth": out / "truth" / "truth.parquet"}
    rng = np.random.default_rng(settings.seed)
    prompts_pool, replies = real_texts(data_dir)
    maker = _Maker(prompts_pool, rng)
    n = settings.n
    n_users = max(1, int(n * settings.users_per_prompt))
    weights = 1.0 / np.arange(1, n_users + 1) ** settings.zipf_s
    users = rng.choice(n_users, size=n, p=weights / weights.sum())
    labeler_users = rng.random(n_users) < settings.labeler_user_share
    is_dup = rng.random(n) < settings.dup_rate
    is_dup[0] = False
    t0 = datetime(2022, 1, 1, tzinfo=timezone.utc)

    prompts = _TableWriter(paths["prompts"], PROMPTS_SCHEMA, rows_per_part)
    truth = _TableWriter(paths["truth"], TRUTH_SCHEMA, rows_per_part)
    texts = _Texts(out / ".texts.tmp", n, rows_per_part)
    originals = np.zeros(n, dtype=np.int64)  # rows that are not duplicates
    n_originals = 0
    pii_of: dict[int, tuple[str, str]] = {}  # originals with a personal value
    n_dups = n_pii = 0
    types = ("plain", "few_shot", "user_based")
    try:
        for i in range(n):
            user = int(users[i])
            dup_of, kind, jac, pii_kind, pii_value = None, None, None, None, None
            text = None
            if is_dup[i]:
                orig = int(originals[int(rng.integers(n_originals))])
                kind = DUP_KINDS[int(rng.integers(len(DUP_KINDS)))]
                original = texts[orig]
                text = maker.duplicate(original, kind)
                if text is not None:
                    dup_of = f"p{orig:08d}"
                    jac = round(prefix_jaccard(original, text), 4)
                    if orig in pii_of and pii_of[orig][1] in text:  # not cut off or recased
                        pii_kind, pii_value = pii_of[orig]
                    if rng.random() < 0.7:  # most re-submissions come from the same user
                        user = int(users[orig])
                else:
                    kind = None
            if text is None:
                text = maker.new_prompt()
                if rng.random() < settings.pii_rate:
                    pii_kind = PII_KINDS[int(rng.integers(len(PII_KINDS)))]
                    text, pii_value = maker.inject(text, pii_kind)
                    pii_of[i] = (pii_kind, pii_value)
                originals[n_originals] = i
                n_originals += 1
            labeler = bool(labeler_users[user])
            texts.append(text)
            prompts.add(f"p{i:08d}", f"user_{user}", "labeler" if labeler else "api", types[user % 3] if labeler else None, text,
                        t0 + timedelta(seconds=17 * i), "en")
            truth.add(f"p{i:08d}", dup_of, kind, jac, pii_kind, pii_value)
            n_dups += dup_of is not None
            n_pii += pii_value is not None
    finally:
        texts.close()
    counts = {"prompts": prompts.close(), "injected_duplicates": n_dups, "injected_pii": n_pii}
    truth.close()
    del users, is_dup, originals, pii_of

    demos = _TableWriter(paths["demonstrations"], DEMOS_SCHEMA, rows_per_part)
    ranks = _TableWriter(paths["rankings"], RANKINGS_SCHEMA, rows_per_part)
    draw = rng.random((n, 2))
    for i in range(n):
        if draw[i, 0] < settings.demo_rate:
            demos.add(f"p{i:08d}", f"lab_{int(rng.integers(40))}", replies[int(rng.integers(len(replies)))][:1500])
        if draw[i, 1] < settings.ranking_rate:
            k = int(rng.integers(4, 10))
            order = rng.permutation(k)
            r = [int(x) for x in order]
            if rng.random() < 0.2:  # a tie between the two worst
                r = [min(x, k - 2) for x in r]
            labeler = f"lab_{int(rng.integers(40))}"
            ranks.add(f"p{i:08d}", labeler, [replies[int(j)][:800] for j in rng.choice(len(replies), size=k, replace=False)], r)
    return counts | {"demonstrations": demos.close(), "rankings": ranks.close(), "paths": paths}
