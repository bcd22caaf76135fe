"""Source adapters: each turns one `--source SPEC` into canonical raw records, read lazily, plus its own accounting.

SPEC is `NAME:ARG` for a registered NAME (`oasst:HUB_ID_OR_PATH`, `hh-rlhf:HUB_ID_OR_PATH`, `jsonl:PATH`,
`parquet:PATH`) or `sample`. An adapter is a function `(spec, arg, on_error) -> SourceData`; register another with
`register("name", adapter)`. Every adapter streams: `SourceData.stream()` reads the input again on each call (the
executor reads each source twice: prompts, then labels) and holds no more than one record, or one oasst message
tree, at a time. What an adapter drops before validation (a deleted oasst message, an HH pair whose replies do not
share a prefix, and with `on_error="skip"` a row it cannot read) is counted with its reason by the `SourceData`,
on the one pass the caller asks it to tally.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from builders import interrupts
from builders.errors import InputError
from builders.readers import RawRecord


@dataclass
class SourceData:
    """One source: how to read its records (`reader(self)`, again on each call) and, after a `stream(tally=True)`,
    how many input units it read, what they became and what it dropped with reasons."""

    spec: str
    unit: str  # what `units_read` counts: "records", "messages", "pairs"
    reader: Callable[["SourceData"], Iterator[RawRecord]]
    license: str | None = None
    on_error: str = "fail"
    units_read: int = 0
    used: Counter = field(default_factory=Counter)  # input units by what they became
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (input id, reason)
    frame_reader: Callable[["SourceData", bool], Iterator] | None = None  # the same records as Arrow batches (RawFrame)
    _tallying: bool = False

    @property
    def columnar(self) -> bool:
        """Whether `stream_frames` reads this source a batch of columns at a time (Parquet and JSONL files)."""
        return self.frame_reader is not None

    def stream_frames(self, tally: bool = False, labels_only: bool = False):
        """The source's records as `builders.readers.RawFrame` batches, the same records `stream` yields; with
        `labels_only`, files that can hold only prompts are skipped (the labels' pass)."""
        if self.frame_reader is None:
            raise TypeError(f"source {self.spec} is read record by record")
        return self._read(lambda src: self.frame_reader(src, labels_only), tally)

    def stream(self, tally: bool = False) -> Iterator[RawRecord]:
        """The source's records, one at a time; with `tally`, its counts start again from zero and count this pass."""
        return self._read(self.reader, tally)

    def _read(self, reader, tally: bool):
        if tally:
            self.units_read, self.used, self.dropped = 0, Counter(), []
        self._tallying = tally
        try:
            for item in reader(self):
                interrupts.check()
                yield item
        finally:
            self._tallying = False

    def became(self, what: str, n: int = 1) -> None:
        """An adapter read `n` input units that became `what` (a prompt, a ranking completion, ...)."""
        if self._tallying:
            self.units_read += n
            self.used[what] += n

    def drop(self, unit_id: str, reason: str) -> None:
        """An adapter read one input unit and dropped it, with a reason that holds no path and no raw value."""
        if self._tallying:
            self.units_read += 1
            self.dropped.append((unit_id, reason))

    def skip_or_raise(self, err: InputError, unit_id: str) -> None:
        """A unit the adapter cannot read: raise, or with on_error="skip" drop it with the error's category."""
        if self.on_error != "skip":
            raise err
        self.drop(unit_id, err.category())

    def dropped_rows(self):
        """What this source dropped before validation, as rows of the build's dropped-records table."""
        import polars as pl

        from builders.schema import DROPPED_SCHEMA

        rows = [(rid, "source_record", "read:" + self.spec, reason) for rid, reason in self.dropped]
        return pl.DataFrame(rows, schema=DROPPED_SCHEMA, orient="row")

    def accounting(self) -> dict:
        return {
            "spec": self.spec,
            "unit": self.unit,
            "read": self.units_read,
            "became": dict(sorted(self.used.items())),
            "dropped": dict(sorted(Counter(r for _, r in self.dropped).items())),
        }


Adapter = Callable[[str, str, str], SourceData]  # (spec, arg, on_error) -> SourceData
_ADAPTERS: dict[str, Adapter] = {}
_ALIASES = {"hh_rlhf": "hh-rlhf", "hh": "hh-rlhf"}


def register(name: str, adapter: Adapter) -> None:
    """Make `--source NAME:ARG` read with `adapter(spec, arg, on_error)`."""
    _ADAPTERS[name.lower()] = adapter


def _registered() -> dict[str, Adapter]:
    """Every adapter: the ones shipped with instructkit (imported on first use) and those registered by the user,
    which win over a shipped one of the same name."""
    from builders.sources import files, hh_rlhf, oasst

    shipped = {"jsonl": lambda spec, arg, on_error: files.read_canonical(spec, arg, "jsonl", on_error=on_error),
               "parquet": lambda spec, arg, on_error: files.read_canonical(spec, arg, "parquet", on_error=on_error),
               "oasst": oasst.read_oasst, "hh-rlhf": hh_rlhf.read_hh_rlhf}
    return {**shipped, **_ADAPTERS}


def load_source(spec: str, on_error: str = "fail") -> SourceData:
    """The SourceData of a SPEC; nothing is read until `stream()`. Bad specs and missing paths fail here."""
    name, colon, arg = spec.partition(":")
    name = _ALIASES.get(name.strip().lower(), name.strip().lower())
    if name == "sample" and not arg:
        from builders.sources.files import read_sample

        return read_sample(spec, on_error=on_error)
    adapters = _registered()
    known = "sample, " + ", ".join(f"{n}:..." for n in adapters)
    if not colon:  # perhaps a bare path
        kind = "parquet" if spec.endswith(".parquet") else "jsonl"
        hint = f"; for a file or folder of your logs write {kind}:{spec}" if (Path(spec).exists() or "." in Path(spec).name) else ""
        raise InputError(f"unknown source '{spec}' (use {known}){hint}", flag="--source")
    if not arg:
        raise InputError(f"source '{spec}' needs a path or Hub id after the colon", flag="--source")
    if name not in adapters:
        raise InputError(f"unknown source '{name}' (use {known})", flag="--source")
    return adapters[name](spec, arg, on_error)


def local_path(arg: str) -> Path | None:
    """A local file or folder, or None for a Hub id; a missing path that looks local (a file suffix, `./`, `/`)
    is an error here rather than a failed Hub download later."""
    path = Path(arg)
    if path.exists():
        return path
    if arg.startswith((".", "/", "~")) or path.suffix.lower() in (".jsonl", ".json", ".parquet", ".gz") or "/" not in arg:
        raise InputError("file not found (nor a Hub dataset id, which reads ORG/NAME)", file=arg)
    return None


def public_spec(spec: str) -> str:
    """A source as a dataset card may show it: a Hub id as it is, a local file or folder by its name only."""
    name, colon, arg = spec.partition(":")
    if not colon or not arg:
        return spec
    local = name.strip().lower() in ("jsonl", "parquet") or Path(arg).exists()
    return f"{name}:{Path(arg.rstrip('/')).name}" if local else spec
