"""Structure features of a prompt that words alone miss: a supplied passage, transcript markers, answer options,
list requests, code, a trailing question. Dense, scaled to about [0, 1]."""

from __future__ import annotations

import re

import numpy as np

TRANSCRIPT = re.compile(r"^\s*[A-Z][\w .'-]{0,24}:\s", re.MULTILINE)
OPTIONS = re.compile(r"(?:^|\s)\(?[A-Da-d][).]\s")
LIST_ASK = re.compile(r"\b(?:\d+|ten|five|several|some|few)\s+(?:\w+\s+){0,2}(?:ideas|names|ways|things|tips|options|"
                      r"suggestions|examples|titles|topics|questions|books|places|reasons)\b|\b(?:list|brainstorm|suggest|ideas)\b", re.I)
CODE = re.compile(r"[{};]\s*$|^\s*(?:def|class|public|function|import|#include|SELECT)\b|=>|\breturn\b", re.M)
QUOTED = re.compile(r"\"[^\"]{20,}\"|:\s*\n")
# an explicit pointer to supplied text: long prompts with personal context are not passages
GIVEN = re.compile(r"\b(?:following|below|above|this|these|the)\s+(?:text|passage|article|paragraph|email|e-mail|story|"
                   r"review|reviews|notes|transcript|conversation|document|poem|song|code|sentence|sentences|chapter|essay|"
                   r"thread|list|table|message)\b|\b(?:text|passage|article|paragraph|context)\s*:", re.I)
WH = re.compile(r"^\s*(?:who|what|when|where|why|how|which|is|are|can|does|do|did)\b", re.I)

N_FEATURES = 10


def structure_features(texts) -> np.ndarray:
    out = np.zeros((len(texts), N_FEATURES), dtype=np.float64)
    for i, t in enumerate(texts):
        n = len(t)
        lines = t.count("\n")
        turns = len(TRANSCRIPT.findall(t))
        given = bool(GIVEN.search(t))
        out[i] = (
            1.0 if given else 0.0,
            min(lines, 20) / 20,
            min(turns, 6) / 6,
            1.0 if t.rstrip().endswith(":") else 0.0,
            min(len(OPTIONS.findall(t)), 4) / 4,
            1.0 if LIST_ASK.search(t) else 0.0,
            1.0 if CODE.search(t) else 0.0,
            1.0 if (n > 160 and given and (QUOTED.search(t) or lines >= 2)) else 0.0,  # a passage is supplied
            1.0 if t.rstrip().endswith("?") else 0.0,
            1.0 if WH.search(t) else 0.0,
        )
    return out
