"""Shared fixtures: an isolated HF cache and pseudonym key, the real shared data, one PII scanner and one
classifier per session, and one sample build that several tests read."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
EXCERPTS = Path(__file__).resolve().parent / "data" / "public"
# where each excerpt stands in the layout of ../shared/data
LAYOUT = {
    "oasst1_en_validation/oasst1_en_validation.jsonl": "oasst1_flat_25_trees.jsonl",
    "oasst_trees_synthetic/en_100_tree.jsonl": "oasst_nested_10_trees.jsonl",
    "hh_rlhf/helpful-base/test.jsonl.gz": "hh_rlhf_helpful_test_150.jsonl.gz",
    "hh_rlhf/harmless-base/test.jsonl.gz": "hh_rlhf_harmless_test_150.jsonl.gz",
    "truthfulqa/TruthfulQA_v0_original.csv": "truthfulqa_60_questions.csv",
    "truthfulqa/mc_task_v0.json": "truthfulqa_mc_60.json",
    "truthfulqa/finetune_truth_v0.jsonl": "truthfulqa_judge_truth_60.jsonl",
    "truthfulqa/finetune_info_v0.jsonl": "truthfulqa_judge_info_60.jsonl",
    "realtoxicityprompts_decodingtrust/toxic.jsonl": "rtp_toxic_150.jsonl",
    "realtoxicityprompts_decodingtrust/nontoxic.jsonl": "rtp_nontoxic_150.jsonl",
    "pii_presidio_research/synth_dataset_v2.json": "presidio_research_300.json",
    "pii_presidio_research/LICENSE": "presidio_research_LICENSE",
}
FULL_DATA = SHARED.exists() and os.environ.get("INSTRUCTKIT_TEST_EXCERPTS") != "1"
# a fact of a whole public dataset (817 TruthfulQA questions, the taxonomy's scores on its hand-labeled real prompts)
needs_full_data = pytest.mark.skipif(not FULL_DATA, reason="checks a fact of the whole public dataset in ../shared/data")


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
def shared(tmp_path_factory) -> Path:
    """The real public data: ../shared/data when it is there, else the excerpts of tests/data laid out the same way."""
    if FULL_DATA:
        return SHARED
    root = tmp_path_factory.mktemp("public_data")
    for target, excerpt in LAYOUT.items():
        (root / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(EXCERPTS / excerpt, root / target)
    return root


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
    from instructkit.cli import main

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
