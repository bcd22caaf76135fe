"""The held-out test of REAL prompts, labeled by hand for this project and never trained on.

`taxonomy/data/heldout_real.jsonl` stores only references (source + message id) and labels; the texts are read
from the public data in `../shared/data` (never copied into this repository).
Coverage: 167 oasst1 (English validation) prompts — 156 first turns and 11 follow-ups — in 7 of the 10 use
cases. The public logs here hold no real Extract, Classification or Other prompts, so those classes are
measured only by cross-validation on the labeled set.
"""

from __future__ import annotations

import json
from pathlib import Path

from builders.errors import InputError

HELDOUT = Path(__file__).resolve().parent / "data" / "heldout_real.jsonl"
SOURCES = {"oasst1_en_validation": "oasst1_en_validation/oasst1_en_validation.jsonl"}


def load_heldout(data_dir: str | Path, path: Path = HELDOUT) -> tuple[list[str], list[str]]:
    refs = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts_by_source: dict[str, dict[str, str]] = {}
    for name, rel in SOURCES.items():
        file = Path(data_dir) / rel
        if not file.exists():
            raise InputError("needed for the held-out real prompts; pass --data-dir pointing at the public data", file=str(file))
        with open(file, encoding="utf-8") as fh:
            texts_by_source[name] = {m["message_id"]: m["text"] for m in map(json.loads, fh)}
    texts, labels = [], []
    for i, ref in enumerate(refs, start=1):
        try:
            texts.append(texts_by_source[ref["source"]][ref["message_id"]])
        except KeyError:
            raise InputError(f"reference {ref.get('message_id')!r} not found in {ref.get('source')!r}", file=str(path), line=i) from None
        labels.append(ref["label"])
    return texts, labels
