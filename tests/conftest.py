"""Shared fixtures: an isolated HF cache and pseudonym key, the real shared data, one PII scanner and one
classifier per session, and one sample build that several tests read."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _isolated_env(tmp_path_factory):
    home = tmp_path_factory.mktemp("hf_home")
    os.environ["HF_HOME"] = str(home)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["INSTRUCTKIT_PSEUDONYM_KEY"] = "test-key-not-secret"
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("xdg"))
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg_cache"))
    yield


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.exists():
        pytest.fail(f"{SHARED} is missing: tests read the real public data from ../shared/data")
    return SHARED


@pytest.fixture(scope="session")
def scanner():
    from builders.stages.pii import PiiScanner

    return PiiScanner(progress=False)


@pytest.fixture(scope="session")
def classifier():
    from taxonomy import load_default

    return load_default()


def generated_log(folder: Path, shared: Path, n: int, seed: int) -> Path:
    """A benchmark log of n prompts (duplicates, personal data, heavy users), made by the CLI."""
    from builders.cli import main

    out = folder / "log"
    assert main(["bench", "generate", "--n", str(n), "--seed", str(seed), "--out", str(out), "--data-dir", str(shared)]) == 0
    return out


@pytest.fixture(scope="session")
def bench_log(tmp_path_factory, shared) -> Path:
    """A generated benchmark log of 4,000 prompts."""
    return generated_log(tmp_path_factory.mktemp("bench"), shared, 4000, 3)


@pytest.fixture(scope="session")
def sample_build(tmp_path_factory, scanner, classifier):
    """The default build (the embedded sample), once per session: (out folder, report)."""
    from builders.pipeline import build
    from builders.settings import BuildSettings

    out = tmp_path_factory.mktemp("sample_build")
    report = build(BuildSettings(out=str(out)), classifier=classifier, scanner=scanner, progress=False)
    return out, report


def write_jsonl(path: Path, rows) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n")
    return path


def prompt(pid: str, text: str, user: str = "u1", created: str | None = None, source: str = "api", **extra) -> dict:
    return {"prompt_id": pid, "user_id": user, "source": source, "prompt_type": None, "text": text,
            "created_at": created, "lang": "en", **extra}
