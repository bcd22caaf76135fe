"""Anthropic HH-RLHF pairs as K=2 rankings of a shared conversation prefix.

HH-RLHF has no user ids. Each conversation is assigned the user `hh_<hash of its first human turn>`: pairs that
open with the same request (the closest thing to one person's session this data has) always land in the same
split, so an opening request seen in training never reappears in validation or test.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

from builders.errors import InputError
from builders.readers import RawRecord, iter_records
from builders.sources import SourceData, local_path

TURN = re.compile(r"\n\n(Human|Assistant): ")
ROLE = {"Human": "user", "Assistant": "assistant"}


def parse_transcript(text: str) -> list[dict]:
    """'\\n\\nHuman: ...\\n\\nAssistant: ...' into chat messages."""
    parts = TURN.split(text)
    if parts[0].strip() or len(parts) < 3:
        raise ValueError("not a '\\n\\nHuman: ... \\n\\nAssistant: ...' transcript")
    return [{"role": ROLE[parts[i]], "content": parts[i + 1].strip()} for i in range(1, len(parts), 2)]


def user_for(messages: list[dict]) -> str:
    first = next((m["content"] for m in messages if m["role"] == "user"), "")
    return "hh_" + hashlib.sha256(" ".join(first.lower().split()).encode("utf-8")).hexdigest()[:16]


def _local_files(path: Path) -> list[Path]:
    files = sorted(p for p in path.rglob("*") if p.name.endswith((".jsonl", ".jsonl.gz", ".parquet"))) if path.is_dir() else [path]
    if not files:
        raise InputError("no .jsonl, .jsonl.gz or .parquet files", file=str(path))
    return files


def _local_rows(path: Path, files: list[Path], src: SourceData) -> Iterator[tuple[dict, str, int, str]]:
    base = path if path.is_dir() else path.parent
    for file in files:
        tag = str(file.relative_to(base)).split(".")[0]
        for rec in iter_records(file):
            if rec.error:
                src.skip_or_raise(rec.error, f"hh:{tag}:{rec.line}")
                continue
            yield rec.data, rec.file, rec.line, f"{tag}:{rec.line}"


def _hub_rows(hub_id: str) -> Iterator[tuple[dict, str, int, str]]:
    from datasets import load_dataset

    ds = load_dataset(hub_id)  # memory-mapped Arrow files: rows are read as they are iterated
    for split in sorted(ds):
        for i, row in enumerate(ds[split], start=1):
            yield row, f"{hub_id}[{split}]", i, f"{split}:{i}"


def read_hh_rlhf(spec: str, arg: str, on_error: str = "fail") -> SourceData:
    path = local_path(arg)
    files = _local_files(path) if path is not None else None

    def reader(src: SourceData) -> Iterator[RawRecord]:
        for data, file, line, tag in (_local_rows(path, files, src) if files is not None else _hub_rows(arg)):
            pid = f"hh:{tag}"
            try:
                chosen = parse_transcript(data["chosen"])
                rejected = parse_transcript(data["rejected"])
            except KeyError as exc:
                src.skip_or_raise(InputError("missing", file=file, line=line, field=exc.args[0]), pid)
                continue
            except (ValueError, TypeError) as exc:
                src.skip_or_raise(InputError(str(exc), file=file, line=line, field="chosen"), pid)
                continue
            prefix = chosen[:-1]
            if chosen[-1]["role"] != "assistant" or rejected[:-1] != prefix or rejected[-1]["role"] != "assistant":
                src.drop(pid, "chosen_and_rejected_do_not_share_a_prefix")
                continue
            if not prefix or prefix[-1]["role"] != "user":
                src.drop(pid, "no_human_turn_before_reply")
                continue
            tie = chosen[-1]["content"] == rejected[-1]["content"]
            src.became("pair")
            yield RawRecord({"prompt_id": pid, "user_id": user_for(prefix), "source": "api", "prompt_type": None,
                             "messages": prefix, "created_at": None, "lang": "en"}, file, line, source=spec, kind="prompt")
            yield RawRecord({"ranking_id": f"{pid}:ranking", "prompt_id": pid, "labeler_id": "hh_crowdworker",
                             "completions": [chosen[-1]["content"], rejected[-1]["content"]],
                             "ranks": [0, 0] if tie else [0, 1]}, file, line, source=spec, kind="ranking")

    return SourceData(spec, "pairs", reader, license="mit", on_error=on_error)
