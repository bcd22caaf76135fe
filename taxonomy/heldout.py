"""Hand-labeled REAL prompts, stored as references (source + id + label); the texts are read from the public data
in `../shared/data` (never copied into this repository).

- `taxonomy/data/heldout_real.jsonl` (`--heldout oasst`): the held-out test, never trained on. 167 oasst1
  (English validation) prompts — 156 first turns and 11 follow-ups — in 7 of the 10 use cases.
- `taxonomy/data/heldout_mixed.jsonl` (`--heldout mixed`): a second held-out test, labeled after the shipped
  models were fitted and scored blind: 100 HH-RLHF helpful-base first turns and 100 oasst1 validation follow-up
  turns, none in the other files.
- `taxonomy/data/heldout_followups.jsonl` (`--heldout followups`): 73 follow-up prompter turns of the synthetic oasst
  trees (their roots are training prompts; no follow-up is), labeled by their own text, after the models were fitted.
- `taxonomy/data/heldout_shapes.jsonl` (`--heldout shapes`): 50 prompts written for this project in the shapes Table
  1's definitions name (transcripts and role-play, "given X, decide Y", word problems, passages with a question or
  options, text to extract from), written apart from the training ones, plus 30 HH-RLHF dialogues pasted as
  transcripts (Chat) from rows no training file uses.
- `taxonomy/data/heldout_mixed_second_pass.jsonl`: the same 200 prompts labeled a second time, blind to the
  first labels (how consistent the labels are: 92.5% agreement; never trained on).
- `taxonomy/data/real_labeled.jsonl`: 746 real prompts labeled for training (disjoint from the held-out tests):
  300 first human turns of HH-RLHF's test splits (240 helpful-base, 60 harmless-base), 94 root prompts of the
  synthetic oasst trees (six more are held-out prompts and are left out), and 32 root prompts and 320 follow-up
  turns of oasst1 validation that are in neither held-out test (the last 200 follow-ups, by message id, added
  after the blind test was scored). Measured by cross-validation (each fold trained
  on the written set plus the other folds).

- The second round (2026-12-08): 3,000 more real prompts, each labeled twice independently from the same guide
  (`taxonomy/data/LABELING_GUIDE.md`: the definitions and tie-break rules in `taxonomy/categories.py` with
  clarifications that follow from them), the
  disagreements settled from the same rules by a third pass; every row keeps both labels (`first`, `second`) beside
  the settled `label`. Chosen to weigh toward the classes and boundaries the models miss: every unused HH-RLHF
  test first turn the shipped model put in a weak class, the 900 it was least sure of, 150 TruthfulQA questions, 150
  RealToxicityPrompts sentence starts, the rest drawn at random from the unused HH-RLHF first turns. Split by source:
  `taxonomy/data/real_labeled_2.jsonl` (training: HH-RLHF harmless-base test first turns and the non-toxic RTP
  sample) and `taxonomy/data/heldout_large.jsonl` (`--heldout large`, never trained on: HH-RLHF helpful-base test
  first turns, TruthfulQA questions and the toxic RTP sample). The annotators were AI-assistant instances working
  blind to each other and to the models, not people.

The public logs here hold almost no real Extract, Classification, Summarization or Closed QA prompts, so those
classes are measured mainly by cross-validation on the written labeled set.

References: `oasst1_en_validation` and `oasst_trees_synthetic` by message id; `hh_helpful_test` and
`hh_harmless_test` by the 0-based row of the test split (`Anthropic/hh-rlhf`, `data_dir="helpful-base"` etc.),
whose text is the first `Human:` turn of `chosen`; `truthfulqa_v0` by the 0-based row of
`TruthfulQA_v0_original.csv` (its question); `rtp_toxic` / `rtp_nontoxic` by the 0-based line of the
RealToxicityPrompts sample (its prompt text). Licences of the texts referred to: oasst1 Apache-2.0, HH-RLHF MIT,
TruthfulQA Apache-2.0, RealToxicityPrompts Apache-2.0 (the DecodingTrust sample CC BY-SA 4.0); the labels are this
project's.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Callable, Iterator

from builders.errors import InputError
from builders.sources.hh_rlhf import parse_transcript
from builders.sources.oasst import local_messages

DATA = Path(__file__).resolve().parent / "data"
HELDOUT_SETS = {"oasst": DATA / "heldout_real.jsonl", "mixed": DATA / "heldout_mixed.jsonl", "shapes": DATA / "heldout_shapes.jsonl",
                "followups": DATA / "heldout_followups.jsonl", "large": DATA / "heldout_large.jsonl"}
REAL_LABELED = DATA / "real_labeled.jsonl"
REAL_LABELED_2 = DATA / "real_labeled_2.jsonl"  # the second round: 1,542 prompts labeled twice (`first`, `second`)
REAL_SHAPES = DATA / "real_shapes.jsonl"  # 80 HH-RLHF dialogues pasted as transcripts (Chat)


def _oasst(file: Path) -> Iterator[tuple[str, str]]:
    """Every message of an oasst export, flat or nested trees (the oasst source's own reader)."""
    for m, _, _ in local_messages(file):
        yield m["message_id"], m["text"]


def _hh(file: Path) -> Iterator[tuple[str, str]]:
    """Row number and first human turn of an HH-RLHF split (parsed as the hh-rlhf source parses transcripts)."""
    with gzip.open(file, "rt", encoding="utf-8") as fh:
        for i, row in enumerate(map(json.loads, fh)):
            yield str(i), parse_transcript(row["chosen"])[0]["content"]


def _hh_transcript(file: Path) -> Iterator[tuple[str, str]]:
    """Row number and the whole dialogue of an HH-RLHF pair up to its last `Assistant:` (the reply left for the model
    to write), as the transcript text a user pastes: a Chat prompt. Only dialogues of two human turns or more."""
    with gzip.open(file, "rt", encoding="utf-8") as fh:
        for i, row in enumerate(map(json.loads, fh)):
            head, sep, _ = row["chosen"].rpartition("\n\nAssistant:")
            if sep and head.count("\n\nHuman:") >= 2:
                yield str(i), (head + sep).strip()


def _truthfulqa(file: Path) -> Iterator[tuple[str, str]]:
    """0-based row and question of TruthfulQA's generation CSV."""
    import csv

    with open(file, newline="", encoding="utf-8-sig") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            yield str(i), row["Question"]


def _rtp(file: Path) -> Iterator[tuple[str, str]]:
    """0-based line and prompt text (a sentence start) of a RealToxicityPrompts sample."""
    with open(file, encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            yield str(i), json.loads(line)["prompt"]["text"]


SOURCES: dict[str, tuple[str, Callable[[Path], Iterator[tuple[str, str]]]]] = {
    "oasst1_en_validation": ("oasst1_en_validation/oasst1_en_validation.jsonl", _oasst),
    "oasst_trees_synthetic": ("oasst_trees_synthetic/en_100_tree.jsonl", _oasst),
    "hh_helpful_test": ("hh_rlhf/helpful-base/test.jsonl.gz", _hh),
    "hh_harmless_test": ("hh_rlhf/harmless-base/test.jsonl.gz", _hh),
    "hh_harmless_transcript": ("hh_rlhf/harmless-base/test.jsonl.gz", _hh_transcript),
    "hh_helpful_transcript": ("hh_rlhf/helpful-base/test.jsonl.gz", _hh_transcript),
    "truthfulqa_v0": ("truthfulqa/TruthfulQA_v0_original.csv", _truthfulqa),
    "rtp_toxic": ("realtoxicityprompts_decodingtrust/toxic.jsonl", _rtp),
    "rtp_nontoxic": ("realtoxicityprompts_decodingtrust/nontoxic.jsonl", _rtp),
}


def load_refs(path: Path, data_dir: str | Path) -> tuple[list[str], list[str]]:
    """Texts and labels of a reference file, resolved against the public data in `data_dir`."""
    refs = []
    written = {}  # rows that carry their own text (prompts this project wrote), by line
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            ref = json.loads(line)
            if "text" in ref:
                written[i] = ref
                continue
            if ref.get("source") not in SOURCES:
                raise InputError(f"unknown source {ref.get('source')!r} (one of: {', '.join(SOURCES)})", file=str(path), line=i, field="source")
            refs.append((i, ref))
    texts_by_source: dict[str, dict[str, str]] = {}
    for name in sorted({r["source"] for _, r in refs}):
        rel, reader = SOURCES[name]
        file = Path(data_dir) / rel
        if not file.exists():
            raise InputError("needed for the hand-labeled real prompts; pass --data-dir pointing at the public data", file=str(file))
        texts_by_source[name] = dict(reader(file))
    resolved = {i: ref["text"] for i, ref in written.items()}
    for i, ref in refs:
        try:
            resolved[i] = texts_by_source[ref["source"]][str(ref["id"])]
        except KeyError:
            raise InputError(f"reference {ref.get('id')!r} not found in {ref['source']!r}", file=str(path), line=i, field="id") from None
    labels_by_line = {i: r["label"] for i, r in [*refs, *written.items()]}
    order = sorted(resolved)
    return [resolved[i] for i in order], [labels_by_line[i] for i in order]


def load_heldout(data_dir: str | Path, name: str = "oasst") -> tuple[list[str], list[str]]:
    """A held-out test set by name: `oasst` (167 oasst1 prompts) or `mixed` (100 HH-RLHF + 100 oasst1 follow-ups)."""
    if name not in HELDOUT_SETS:
        raise InputError(f"unknown held-out set {name!r} (one of: {', '.join(HELDOUT_SETS)})", field="heldout")
    return load_refs(HELDOUT_SETS[name], data_dir)


def load_real_labeled(data_dir: str | Path, path: Path = REAL_LABELED) -> tuple[list[str], list[str]]:
    return load_refs(path, data_dir)
