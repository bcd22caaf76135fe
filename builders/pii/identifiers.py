"""Direct identifiers: presidio-analyzer's recognizers where they find everything (e-mail, IP, US SSN, IBAN, and
phone numbers through the `phonenumbers` parser, for more regions and more leniently than presidio's defaults),
and this module's own where presidio's miss values: cards of every issuer (any 12-19 digit run that passes
Luhn's check), postal codes, driver's licences, passports and dates of birth next to the words that name them.

Each recognizer first checks a necessary condition (an @, enough digits, a cue word), so most texts cost a few
string scans.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import regex as re

# Phone numbers: the regions the numbers of our users most often come from. An international number (+44 ...)
# is found from any region; these decide which national formats are read.
PHONE_REGIONS = ("US", "GB", "DE", "FR", "IN", "CA", "AU", "ES", "IT")
# phonenumbers' Leniency.POSSIBLE: the length fits a number of the region (Faker's, and people's, numbers with
# unassigned area codes are still someone's number)
PHONE_LENIENCY = 0

CARD = re.compile(r"(?<![\d.,-])\d(?:[ -]?\d){11,18}(?![\d])")
# An IBAN-shaped code next to the word IBAN, even when its checksum fails (a typo'd IBAN is still personal).
IBAN_CUE = re.compile(r"(?i)\biban\b[\s:#.]*(?:is|no\.?|number)?[\s:#]*((?-i:[A-Z]{2}\d{2}(?:[ -]?[A-Z0-9]){8,30}))\b")

_DATE = (r"(?:\d{1,4}[./-]\d{1,2}[./-]\d{1,4}|"
         r"(?:\d{1,2}(?:st|nd|rd|th)?[ \t]+(?:of[ \t]+)?)?(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
         r"(?:[ \t]+\d{1,2}(?:st|nd|rd|th)?)?,?[ \t]+\d{4})")
# (entity, cue, value): the value right after the cue (within a few words: "my date of birth is", "DOB:")
CUED = [
    ("DATE_OF_BIRTH", r"\b(?:born(?:[ \t]+(?:on|in))?|d\.?o\.?b\.?|date[ \t]+of[ \t]+birth|birth[ \t]?date|birthday|geboren(?:[ \t]+am)?|"
                      r"née?[ \t]+le|fecha[ \t]+de[ \t]+nacimiento|data[ \t]+di[ \t]+nascita)", _DATE),
    ("PASSPORT", r"\bpass(?:port)?(?:[ \t]*(?:no\.?|number|num\.?|nr\.?|#|n°|id))?",
                 r"(?-i:[A-Z]{0,3}[ -]?\d{5,10}[A-Z]?|[A-Z0-9]{6,10})(?<=\d\w*)"),
    ("US_DRIVER_LICENSE", r"\b(?:driver'?s?|driving)[ \t]+licen[cs]e(?:[ \t]*(?:no\.?|number|num\.?|#|id))?|\bDL[ \t]*(?:#|no\.?|number)?",
                          r"(?-i:[A-Z]{0,2}\d[\d -]{3,18}\d|[A-Z]{1,2}\d{3,14}|\d{2,4}-\d{2,4}-\d{2,6})"),
    ("PHONE_NUMBER", r"\b(?:phone|tel|telephone|mobile|cell|cellphone|fax|whatsapp|call[ \t]+me[ \t]+(?:at|on)|reach[ \t]+me[ \t]+(?:at|on)|"
                     r"text[ \t]+me[ \t]+(?:at|on)|(?:phone|mobile|cell)[ \t]+(?:number|no\.?))",
                     r"\+?\(?\d[\d \t().-]{5,18}\d(?<=(?:\d\D*){7})"),
    ("ZIP_CODE", r"\b(?:zip(?:[ \t]*code)?|postal[ \t]*code|post[ \t]*code|postcode|plz|cap|c\.p\.|code[ \t]+postal|código[ \t]+postal)",
                 r"(?-i:[A-Z]{1,2}\d[A-Z\d]?[ \t]?\d[A-Z]{2}|[A-Z]\d[A-Z][ \t]?\d[A-Z]\d|\d{3,6}(?:[ -]\d{2,4})?(?:[ \t][A-Z]{2})?)"),
]
_LINK = r"(?:[ \t]*(?:is|was|:|#|=|-|of|number|no\.?|on|in|reads|will be)?[ \t]*){0,3}\n?[ \t]*"
CUED_RE = [(entity, re.compile(rf"(?i)(?:{cue}){_LINK}({value})\b")) for entity, cue, value in CUED]
CUE_WORDS = re.compile(r"(?i)born|d\.?o\.?b|birth|geboren|née?\b|nacimiento|nascita|pass|licen[cs]e|\bdl\b|zip|post|plz|\bcap\b|c\.p\.|"
                       r"código|phone|\btel|mobile|\bcell|\bfax|whatsapp|call|reach|text")
IP_HINT = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|[0-9a-fA-F]{0,4}:[0-9a-fA-F]{0,4}:[0-9a-fA-F]{0,4}")
IBAN_HINT = re.compile(r"[A-Z]{2}\d{2}")


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    entity: str
    score: float


def luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = ord(ch) - 48
        if i % 2 == parity:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def offline_tldextract() -> None:
    """presidio's e-mail and URL recognizers call tldextract, which fetches its suffix list: use the bundled one."""
    import tldextract
    import tldextract.tldextract as tt

    if getattr(tt.TLD_EXTRACTOR, "suffix_list_urls", None):
        tt.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


class IdentifierFinder:
    """Direct identifiers in one text at a time; build once, reuse."""

    def __init__(self):
        offline_tldextract()
        logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
        from presidio_analyzer.predefined_recognizers import (EmailRecognizer, IbanRecognizer, IpRecognizer,
                                                              PhoneRecognizer, UsSsnRecognizer)

        self.email = EmailRecognizer()
        self.ip = IpRecognizer()
        self.ssn = UsSsnRecognizer()
        self.iban = IbanRecognizer()
        self.phones = [PhoneRecognizer(supported_regions=(region,), leniency=PHONE_LENIENCY) for region in PHONE_REGIONS]

    @staticmethod
    def _presidio(recognizer, text: str, entity: str, min_score: float = 0.0) -> list[Span]:
        return [Span(r.start, r.end, entity, r.score) for r in recognizer.analyze(text, [entity], None) if r.score >= min_score]

    def _phones(self, text: str, found: list[Span]) -> list[Span]:
        """Phone numbers: region by region (each reads its national formats; the first also every international
        number), until every run of seven or more digits is covered by a number or another identifier."""
        runs = [m.span() for m in DIGIT_RUN.finditer(text) if sum(map(str.isdigit, m.group())) >= 7]
        phones: list[Span] = []
        for recognizer in self.phones:
            if not runs:
                break
            phones += [s for s in self._presidio(recognizer, text, "PHONE_NUMBER")
                       if _number_digits(text[s.start:s.end]) >= 7 and not _is_date(text[s.start:s.end])]
            covered = phones + found
            runs = [(a, b) for a, b in runs if not any(s.start <= a + 1 and s.end >= b - 1 for s in covered)]
        return _distinct(phones)

    def find(self, text: str) -> list[Span]:
        found: list[Span] = []
        digits = sum(map(str.isdigit, text))
        if "@" in text:
            found += self._presidio(self.email, text, "EMAIL_ADDRESS")
        if IP_HINT.search(text):
            found += self._presidio(self.ip, text, "IP_ADDRESS")
        if digits >= 9:
            # the very weak patterns (any 9-digit number) are kept: recall first
            found += self._presidio(self.ssn, text, "US_SSN")
        if IBAN_HINT.search(text):
            found += self._presidio(self.iban, text, "IBAN_CODE")
            found += [Span(m.start(1), m.end(1), "IBAN_CODE", 0.5) for m in IBAN_CUE.finditer(text)]
        if digits >= 12:
            for m in CARD.finditer(text):
                d = re.sub(r"\D", "", m.group())
                if 12 <= len(d) <= 19 and luhn_ok(d):
                    found.append(Span(m.start(), m.end(), "CREDIT_CARD", 0.9))
        if digits >= 7:
            found += self._phones(text, found)
        if digits and CUE_WORDS.search(text):
            for entity, pattern in CUED_RE:
                found += [Span(m.start(1), m.end(1), entity, 0.6) for m in pattern.finditer(text)]
        return found


EXTENSION = re.compile(r"(?i)\s*(?:x|ext\.?|extension|#)\s*\d+\s*$")


def _number_digits(s: str) -> int:
    """Digits of a phone number before its extension ("400 x 400" is no phone number)."""
    return sum(map(str.isdigit, EXTENSION.sub("", s)))


# a run of digits with the separators phone numbers use
DIGIT_RUN = re.compile(r"[+(]?\d[\d \t().\-/]*\d")


def _distinct(spans: list[Span]) -> list[Span]:
    return sorted(set(spans), key=lambda s: (s.start, -s.end))


_DATE_ONLY = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}|\d{4}[-–]\d{4}")


def _is_date(s: str) -> bool:
    """A date or a range of years that phonenumbers' lenient matcher takes for a number."""
    return bool(_DATE_ONLY.fullmatch(s.strip()))
