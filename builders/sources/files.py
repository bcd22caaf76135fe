"""Canonical-schema files (`jsonl:PATH`, `parquet:PATH`, a file or a folder of them) and the embedded sample."""

from __future__ import annotations

from pathlib import Path

from builders.errors import InputError
from builders.readers import iter_frames, iter_records
from builders.schema import infer_kind
from builders.sources import SourceData

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample"


def _files_in(path: Path, suffix: str) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.name.endswith((suffix, suffix + ".gz")))
        if not files:
            raise InputError(f"no *{suffix} files in this folder", file=str(path))
        return files
    if not path.exists():
        raise InputError("file not found", file=str(path))
    return [path]


def read_canonical(spec: str, arg: str, fmt: str, license: str | None = None, on_error: str = "fail") -> SourceData:
    """Records as they are in the files. An unreadable line is passed on with its error: validation reports it (or
    with on_error="skip" counts it), as it does every other malformed record."""
    files = _files_in(Path(arg), ".jsonl" if fmt == "jsonl" else ".parquet")

    def reader(src: SourceData):
        for file in files:
            for rec in iter_records(file):
                rec.source = spec
                src.became(infer_kind(rec.data) if rec.data is not None else "unreadable")
                yield rec

    # the kinds of rows the last whole read found in each file: the labels' pass skips a file of prompts alone, and
    # reads a file with unreadable rows (bad UTF-8 in Parquet) whole, even where its columns say it holds prompts only
    found: dict[Path, set[str]] = {}

    def frames(src: SourceData, labels_only: bool = False):
        from collections import Counter

        for file in files:
            if labels_only and found.get(file, {"unknown"}) <= {"prompt"}:
                continue
            kinds = Counter()
            for raw in iter_frames(file, labels_only=labels_only and "unreadable" not in found.get(file, ())):
                raw.source = spec
                counts = Counter(raw.kinds())
                kinds.update(counts)
                for kind, n in counts.items():
                    src.became(kind, n)
                yield raw
            if not labels_only:
                found[file] = set(kinds)

    return SourceData(spec, "records", reader, license=license, on_error=on_error, frame_reader=frames)


def read_sample(spec: str = "sample", on_error: str = "fail") -> SourceData:
    """The sample written for this project (builders/sample/), licensed with the project (Apache-2.0)."""
    return read_canonical(spec, str(SAMPLE_DIR), "jsonl", license="apache-2.0", on_error=on_error)
