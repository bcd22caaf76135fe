"""Canonical-schema files (`jsonl:PATH`, `parquet:PATH`, a file or a folder of them) and the embedded sample."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from builders.errors import InputError
from builders.readers import iter_records
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


def read_canonical(spec: str, arg: str, fmt: str, license: str | None = None, lazy: bool = False) -> SourceData:
    suffix = ".jsonl" if fmt == "jsonl" else ".parquet"
    files = _files_in(Path(arg), suffix)
    if lazy:
        def reader():
            for file in files:
                for rec in iter_records(file):
                    rec.source = spec
                    yield rec

        return SourceData(spec, "records", 0, [], used=Counter(), license=license, reader=reader)
    records = []
    for file in files:
        for rec in iter_records(file):
            rec.source = spec
            records.append(rec)
    used = Counter(infer_kind(r.data) if r.data is not None else "unreadable" for r in records)
    return SourceData(spec, "records", len(records), records, used=used, license=license)


def read_sample(spec: str = "sample", lazy: bool = False) -> SourceData:
    """The sample written for this project (builders/sample/), licensed with the project (Apache-2.0)."""
    return read_canonical(spec, str(SAMPLE_DIR), "jsonl", license="apache-2.0", lazy=lazy)
