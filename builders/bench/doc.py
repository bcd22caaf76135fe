"""docs/benchmarks.md holds one section per benchmark command, each between its own markers, so that running one
command rewrites its own section and keeps the others."""

from __future__ import annotations

from pathlib import Path

TITLE = "# Benchmarks\n"


def write_section(path: Path, key: str, text: str) -> None:
    """Replace (or append) the section `key` of the Markdown file at `path`."""
    start, end = f"<!-- section: {key} -->", f"<!-- end: {key} -->"
    block = f"{start}\n{text.rstrip()}\n{end}\n"
    old = path.read_text(encoding="utf-8") if path.exists() else TITLE
    if start in old and end in old:
        head, rest = old.split(start, 1)
        new = head + block + rest.split(end, 1)[1].lstrip("\n")
    else:
        new = old.rstrip("\n") + "\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new, encoding="utf-8")
