"""The benchmark log generator: deterministic, built from real text, with truth that the pipeline can be
scored against (injected duplicates are caught, injected personal data does not survive)."""

from __future__ import annotations

import polars as pl
import pytest

from builders.bench.generate import GenSettings, generate, prefix_jaccard, write
from builders.cli import main
from builders.pipeline import run_stages
from builders.settings import BuildSettings


@pytest.fixture(scope="module")
def log(bench_log):
    return bench_log


def test_generation_is_deterministic_and_truth_is_consistent(log, shared, tmp_path):
    again = tmp_path / "again"
    write(generate(GenSettings(n=4000, seed=3), shared), again)
    for name in ("prompts.parquet", "demonstrations.parquet", "rankings.parquet", "truth/truth.parquet"):
        assert (log / name).read_bytes() == (again / name).read_bytes(), name
    prompts = pl.read_parquet(log / "prompts.parquet")
    truth = pl.read_parquet(log / "truth" / "truth.parquet")
    assert prompts.height == truth.height == 4000
    text = dict(zip(prompts["prompt_id"], prompts["text"]))
    dups = truth.filter(pl.col("dup_of").is_not_null())
    assert 0.08 < dups.height / 4000 < 0.22
    for row in dups.head(200).iter_rows(named=True):
        assert prefix_jaccard(text[row["dup_of"]], text[row["prompt_id"]]) == pytest.approx(row["prefix_jaccard"], abs=1e-4)
    pii = truth.filter(pl.col("pii_value").is_not_null())
    assert pii.height > 100 and all(v in text[p] for p, v in zip(pii["prompt_id"], pii["pii_value"]))
    assert prompts.group_by("user_id").len()["len"].max() > 200  # Zipf users: the cap has work to do


def test_pipeline_catches_injected_duplicates_and_personal_data(log, scanner, classifier):
    truth = pl.read_parquet(log / "truth" / "truth.parquet")
    result = run_stages(BuildSettings(sources=[f"parquet:{log}"], out="unused"), classifier=classifier, scanner=scanner, progress=False)
    dropped = pl.concat([r.dropped for r in result.stages])
    deduped = set(dropped.filter(pl.col("stage") == "dedup")["record_id"])
    real = truth.filter(pl.col("prefix_jaccard") >= 0.8)["prompt_id"].to_list()
    assert sum(p in deduped for p in real) / len(real) >= 0.97
    # rows not injected as duplicates are rarely dropped: the few are near-duplicates already in the real text
    # (HH-RLHF's "I like to host guests ... recipes" template, the sample's "Write a short story ..." prompts)
    distinct = set(truth.filter(pl.col("dup_of").is_null())["prompt_id"])
    assert len(deduped & distinct) / len(distinct) < 0.02
    final = dict(zip(result.tables.prompts["prompt_id"], result.tables.prompts["text"]))
    injected = truth.filter(pl.col("pii_value").is_not_null() & pl.col("prompt_id").is_in(list(final)))
    leaks = [v for p, v in zip(injected["prompt_id"], injected["pii_value"]) if v in final[p]]
    assert injected.height > 50 and len(leaks) / injected.height <= 0.03, leaks[:10]


def test_a_missing_data_dir_is_an_error_not_a_silent_fallback(tmp_path, capsys):
    assert main(["bench", "generate", "--n", "10", "--out", str(tmp_path / "log"), "--data-dir", str(tmp_path / "nope")]) == 2
    assert "data-dir" in capsys.readouterr().err and not (tmp_path / "log").exists()
